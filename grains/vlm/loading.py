"""Loading a vision-language checkpoint (hub id or local directory) with its processor and GrAInS adapter."""

from __future__ import annotations

from typing import Any

from grains.errors import ModelLoadError


def image_only_processor_class(base: type) -> type:
    """A subclass of a Qwen2-VL-style processor that takes no video processor.

    Video processors need torchvision; images do not. Without torchvision, the stock class cannot be built at all,
    so this variant keeps the image path (same token expansion and chat template) and drops video.
    """
    from transformers.processing_utils import ProcessorMixin

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return type(f"ImageOnly{base.__name__}", (base,), {"__init__": __init__, "__module__": __name__})


def _torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def load_processor(source: str, config: Any, common: dict[str, Any]) -> Any:
    """AutoProcessor, or for Qwen2-VL/Qwen2.5-VL without torchvision an image-only processor built from its parts."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    model_type = getattr(config, "model_type", "")
    if model_type in ("qwen2_vl", "qwen2_5_vl") and not _torchvision_available():
        if model_type == "qwen2_vl":
            from transformers import Qwen2VLProcessor as base
        else:
            from transformers import Qwen2_5_VLProcessor as base
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        image_processor = AutoImageProcessor.from_pretrained(source, backend="pil", **common)
        template = _processor_chat_template(source, common) or getattr(tokenizer, "chat_template", None)
        return image_only_processor_class(base)(image_processor, tokenizer, chat_template=template)
    return AutoProcessor.from_pretrained(source, **common)


def _processor_chat_template(source: str, common: dict[str, Any]) -> str | None:
    """The processor's chat template file (chat_template.jinja / .json), if the checkpoint has one."""
    import json

    from huggingface_hub import hf_hub_download

    kwargs = {k: v for k, v in common.items() if k == "local_files_only"}
    for name in ("chat_template.jinja", "chat_template.json"):
        try:
            path = hf_hub_download(source, name, **kwargs) if "/" in source and not _is_dir(source) else \
                f"{source}/{name}"
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, ValueError):
            continue
        return json.loads(text).get("chat_template") if name.endswith(".json") else text
    return None


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


def load_vlm_pretrained(source: str, config: Any, load_kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(model, processor, adapter) for a checkpoint whose config has a vision_config.

    An architecture without a GrAInS adapter raises ModelLoadError naming the supported families, before any weights
    are read.
    """
    from transformers import AutoModelForImageTextToText

    from grains.vlm.adapters import SUPPORTED_FAMILIES, adapter_class_for_name

    architectures = list(getattr(config, "architectures", None) or [])
    if not any(adapter_class_for_name(a) is not None for a in architectures) and \
            adapter_class_for_name(getattr(config, "model_type", "")) is None:
        name = architectures[0] if architectures else getattr(config, "model_type", "unknown")
        raise ModelLoadError(
            f"{name} is not a supported vision-language architecture; supported: {', '.join(SUPPORTED_FAMILIES)}."
        )
    common = {k: v for k, v in load_kwargs.items() if k in ("trust_remote_code", "local_files_only")}
    model = AutoModelForImageTextToText.from_pretrained(source, **load_kwargs)
    processor = load_processor(source, config, common)
    from grains.vlm.adapters import adapter_for

    adapter = adapter_for(model)
    tokenizer = processor.tokenizer
    template = getattr(processor, "chat_template", None)
    if template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template  # so the chat style is chosen for VLMs whose template lives on the processor
    return model, processor, adapter
