"""Per-family VLM adapters: the language model's decoder layers, merged input embeddings, image-token positions, and
where each image token sits on the picture as the processor saw it.

Every adapter attributes on the merged input embeddings: `embed_ids` runs the vision tower and projector and scatters
the image features into the image-token slots found BY ID (never by embedding equality); `forward_embeds` runs the
language model from those embeddings without pixel values, so the image is never merged twice. The per-token layout
(`image_layout` in a prompt's extras) maps each image token to a cell of one or more "views" of the image; the
first view is the heatmap (`result.image_grid`), the others go to `result.extra["views"]` (see `image_summary`).

Layout: `base` (VLMAdapter, prompt encoding, pixels), `layout` (grid geometry and the image summary), one module per
family (`llava`, `qwen_vl`, `idefics3`, `gemma3`); this module holds the registry.
"""

from __future__ import annotations

from torch import nn

from grains.errors import ModelLoadError
from grains.vlm.adapters.base import LAYOUT_KEY, SOURCE_KEY, VLMAdapter, as_pil_image
from grains.vlm.adapters.gemma3 import Gemma3Adapter
from grains.vlm.adapters.idefics3 import Idefics3Adapter
from grains.vlm.adapters.layout import image_summary, resize_crop_box
from grains.vlm.adapters.llava import LlavaAdapter, LlavaNextAdapter
from grains.vlm.adapters.qwen_vl import Qwen2VLAdapter

__all__ = ["LAYOUT_KEY", "SOURCE_KEY", "SUPPORTED_FAMILIES", "Gemma3Adapter", "Idefics3Adapter", "LlavaAdapter",
           "LlavaNextAdapter", "Qwen2VLAdapter", "VLMAdapter", "adapter_class_for_name", "adapter_for",
           "as_pil_image", "image_summary", "resize_crop_box"]

SUPPORTED_FAMILIES = [
    "LLaVA-1.5 (LlavaForConditionalGeneration)",
    "LLaVA-NeXT / LLaVA-1.6 (LlavaNextForConditionalGeneration)",
    "Qwen2-VL / Qwen2.5-VL (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration)",
    "Idefics3 / SmolVLM (Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration)",
    "Gemma-3 multimodal (Gemma3ForConditionalGeneration)",
]

_BY_NAME: dict[str, type[VLMAdapter]] = {
    "LlavaForConditionalGeneration": LlavaAdapter, "llava": LlavaAdapter,
    "LlavaNextForConditionalGeneration": LlavaNextAdapter, "llava_next": LlavaNextAdapter,
    "Qwen2VLForConditionalGeneration": Qwen2VLAdapter, "qwen2_vl": Qwen2VLAdapter,
    "Qwen2_5_VLForConditionalGeneration": Qwen2VLAdapter, "qwen2_5_vl": Qwen2VLAdapter,
    "Idefics3ForConditionalGeneration": Idefics3Adapter, "idefics3": Idefics3Adapter,
    "SmolVLMForConditionalGeneration": Idefics3Adapter, "smolvlm": Idefics3Adapter,
    "Gemma3ForConditionalGeneration": Gemma3Adapter, "gemma3": Gemma3Adapter,
}


def adapter_class_for_name(name: str) -> type[VLMAdapter] | None:
    """The adapter class for an architecture (class name) or config model_type.

    Args:
        name: a model class name ("LlavaForConditionalGeneration") or a config model_type ("llava").

    Returns:
        The VLMAdapter subclass, or None when the architecture is not supported.

    Example:
        >>> adapter_class_for_name("qwen2_vl").__name__
        'Qwen2VLAdapter'
    """
    return _BY_NAME.get(name)


def adapter_for(model: nn.Module) -> VLMAdapter:
    """The GrAInS adapter for a loaded VLM.

    Args:
        model: a loaded transformers vision-language model.

    Returns:
        The family's VLMAdapter wrapping the model; an unsupported class raises ModelLoadError naming the supported
        families.

    Example:
        >>> adapter = adapter_for(model)  # model: a LlavaForConditionalGeneration
        >>> adapter.family
        'llava'
    """
    cls = adapter_class_for_name(type(model).__name__)
    if cls is None:
        raise ModelLoadError(f"{type(model).__name__} is not a supported vision-language architecture; "
                             f"supported: {', '.join(SUPPORTED_FAMILIES)}.")
    return cls(model)
