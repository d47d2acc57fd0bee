"""Loading a model by preset name, hub id, local directory or GGUF file, onto the right device and dtype."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from grains.adapters import TextAdapter, text_config
from grains.devices import gpu_count, pick_device, pick_dtype
from grains.errors import GrainsError, InputError, ModelLoadError
from grains.fastpaths import speed_up_output_head
from grains.lanes import LaneLock
from grains.matmul_precision import choose_cpu_matmul_precision
from grains.presets import PRESETS, Preset
from grains.prompts import PromptEncoding, PromptFormat, check_format, choose_style, encode_prompt, has_chat_template

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """A model ready for GrAInS: weights frozen, in eval mode, with its tokenizer (and processor for a VLM).
    Made by `load_model`; every library call takes one as `lm`.

    Args:
        model: the transformers model.
        tokenizer: its tokenizer.
        adapter: the family adapter (decoder layers, embeddings, prompt encoding).
        model_id: the name it was loaded by.
        device: where the weights live.
        dtype: the weights' dtype.
        processor: the processor of a vision-language model (None for text models).
        random_weights: True for the tiny random test models.
        prompt_style: "raw", "qa" or "chat".
        notes: what loading chose or noticed, in plain sentences.
        lock: held by every model call that may steer; one re-entrant lock per lane (grains.lanes).

    Example:
        >>> lm = grains.load_model("tiny-random-llama")
        >>> lm.num_layers, lm.prompt_format
        (4, 'chat')
    """

    model: Any
    tokenizer: Any
    adapter: TextAdapter
    model_id: str
    device: torch.device
    dtype: torch.dtype
    processor: Any = None
    random_weights: bool = False
    prompt_style: PromptFormat = "raw"
    notes: list[str] = field(default_factory=list)
    # Hooks act only in the context that installed them (grains.local_hooks); this lock makes model
    # calls of one lane take turns (grains.lanes: a short job's lane never waits for a long job's).
    lock: LaneLock = field(default_factory=LaneLock, repr=False)

    @property
    def prompt_format(self) -> PromptFormat:
        """How prompts are formatted: "raw" (as written), "qa" (`Q: ...\\nA:`) or "chat" (the chat template)."""
        return self.prompt_style

    def with_format(self, prompt_format: str | None) -> LoadedModel:
        """This model with another prompt format (same weights, same lock); itself when `prompt_format` is None.

        Args:
            prompt_format: "raw", "qa", "chat" or None.

        Returns:
            A LoadedModel sharing the model, tokenizer and lock, formatting prompts as asked.
        """
        if prompt_format is None or prompt_format == self.prompt_style:
            return self
        fmt = check_format(prompt_format)
        if fmt == "chat" and not has_chat_template(self.tokenizer):
            raise InputError("This model's tokenizer has no chat template: use the raw or qa prompt format.")
        return replace(self, prompt_style=fmt)

    @property
    def is_vlm(self) -> bool:
        return self.adapter.is_vlm

    @property
    def num_layers(self) -> int:
        return self.adapter.num_layers

    @property
    def hidden_size(self) -> int:
        return self.adapter.hidden_size

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def max_context(self) -> int:
        return int(getattr(text_config(self.model.config), "max_position_embeddings", 4096) or 4096)

    def encode_prompt(self, prompt: str, image: Any = None) -> PromptEncoding:
        """Format and tokenise a prompt (with its image for a VLM)."""
        max_tokens = min(self.max_context - 64, 2048)
        if self.is_vlm:
            return self.adapter.encode_prompt(self.processor, prompt, self.prompt_style, image, max_tokens=max_tokens)
        if image is not None:
            raise InputError("This is a text-only model: it cannot take an image. Load a vision-language model.")
        return encode_prompt(self.tokenizer, prompt, self.prompt_style, max_tokens=max_tokens)

    def info(self) -> dict[str, Any]:
        """A summary for the UI and the CLI."""
        return {
            "model_id": self.model_id, "architecture": type(self.model).__name__, "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""), "parameters": self.num_parameters,
            "layers": self.num_layers, "hidden_size": self.hidden_size, "kind": "VLM" if self.is_vlm else "LLM",
            "random_weights": self.random_weights, "prompt_style": self.prompt_style,
            "prompt_format": self.prompt_style, "has_chat_template": has_chat_template(self.tokenizer),
            "notes": list(self.notes),
        }


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _is_vlm_config(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None


def _finish(model: Any, tokenizer: Any, adapter: TextAdapter, model_id: str, device: torch.device,
            dtype: torch.dtype, processor: Any = None, random_weights: bool = False,
            use_chat_template: bool | None = None) -> LoadedModel:
    model.eval()
    model.requires_grad_(False)  # GrAInS never trains: gradients flow to the input embeddings only
    speed_up_output_head(model)
    precision_note = None if random_weights else choose_cpu_matmul_precision(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, model_id=model_id, device=device,
                       dtype=dtype, processor=processor, random_weights=random_weights,
                       prompt_style=choose_style(tokenizer, use_chat_template),
                       notes=[precision_note] if precision_note else [])


def _load_built(preset: Preset, device: torch.device, dtype: torch.dtype,
                use_chat_template: bool | None) -> LoadedModel:
    built = preset.resolve()()
    model, tok_or_proc = built
    model = model.to(device=device, dtype=dtype)
    if preset.vlm:
        from grains.vlm.adapters import adapter_for

        adapter = adapter_for(model)
        tokenizer = tok_or_proc.tokenizer
        return _finish(model, tokenizer, adapter, preset.name, device, dtype, processor=tok_or_proc,
                       random_weights=True, use_chat_template=use_chat_template)
    return _finish(model, tok_or_proc, TextAdapter(model), preset.name, device, dtype, random_weights=True,
                   use_chat_template=use_chat_template)


def _from_pretrained(source: str, model_id: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool,
                     device_map: str | None, gguf_file: str | None, use_chat_template: bool | None,
                     local_only: bool) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf_file:
        common["gguf_file"] = gguf_file
    if local_only:
        common["local_files_only"] = True
    config = AutoConfig.from_pretrained(source, **common)
    load_kwargs: dict[str, Any] = {"dtype": dtype, **common}
    if device_map is None and device.type == "cuda" and gpu_count() > 1:
        device_map = "auto"
    if device_map:
        load_kwargs["device_map"] = device_map
    if _is_vlm_config(config):
        from grains.vlm.loading import load_vlm_pretrained

        model, processor, adapter = load_vlm_pretrained(source, config, load_kwargs)
        if not device_map:
            model = model.to(device)
        return _finish(model, processor.tokenizer, adapter, model_id, device, dtype, processor=processor,
                       use_chat_template=use_chat_template)
    tokenizer = AutoTokenizer.from_pretrained(source, **common)
    model = AutoModelForCausalLM.from_pretrained(source, **load_kwargs)
    if getattr(model, "hf_quantizer", None) is not None and gguf_file:
        model.hf_quantizer = None  # GGUF weights are dequantised on load
    if not device_map:
        model = model.to(device)
    return _finish(model, tokenizer, TextAdapter(model), model_id, device, dtype,
                   use_chat_template=use_chat_template)


def load_model(
    name_or_path: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    use_chat_template: bool | None = None,
    prompt_format: str | None = None,
) -> LoadedModel:
    """Load a preset name, local directory, `.gguf` file or Hugging Face hub id.

    Device and dtype are chosen automatically (CUDA > MPS > CPU; bf16 on CUDA, fp32 otherwise); several GPUs get
    `device_map="auto"`. `trust_remote_code` stays off unless asked for. Any failure raises ModelLoadError with one
    clear sentence. `prompt_format` ("raw", "qa" or "chat") overrides the default: chat for a model with a chat
    template, raw otherwise (`use_chat_template` is the older switch: False = raw).

    Args:
        name_or_path: a preset (`python -m grains presets`), a local folder, a `.gguf` file or a hub id (default:
            the embedded gemma-3-270m).
        device: "cpu", "cuda", "cuda:N", "mps" or "auto".
        dtype: "float32", "bfloat16", "float16", "auto" or a torch dtype.
        trust_remote_code: allow code from the model repository (off).
        device_map: a transformers device map (default: "auto" with several GPUs).
        use_chat_template: older switch; False means prompt_format "raw".
        prompt_format: "raw", "qa" or "chat".

    Returns:
        The LoadedModel.

    Example:
        >>> lm = grains.load_model("gemma-3-270m")
        >>> lm.model_id
        'gemma-3-270m'
    """
    if prompt_format is not None:
        check_format(prompt_format)
        use_chat_template = None
    lm = _load_model(name_or_path, device, dtype, trust_remote_code, device_map, use_chat_template)
    return lm.with_format(prompt_format)


def _load_model(name_or_path: str | None, device: str | None, dtype: str | torch.dtype | None,
                trust_remote_code: bool, device_map: str | None, use_chat_template: bool | None) -> LoadedModel:
    from grains.presets import DEFAULT_MODEL

    name = (name_or_path or DEFAULT_MODEL).strip()
    if not name:
        raise InputError("No model given.")
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    try:
        if name in PRESETS:
            preset = PRESETS[name]
            if preset.group == "test":
                return _load_built(preset, torch_device, torch_dtype, use_chat_template)
            checkpoint = preset.resolve()()
            return _from_pretrained(str(checkpoint), name, torch_device, torch_dtype, False, device_map, None,
                                    use_chat_template, local_only=True)
        path = Path(name).expanduser()
        if path.exists():
            if path.is_file() and path.suffix == ".gguf":
                return _from_pretrained(str(path.parent), name, torch_device, torch_dtype, trust_remote_code,
                                        device_map, path.name, use_chat_template, local_only=True)
            if path.is_dir() and not (path / "config.json").exists():
                raise ModelLoadError(f"{name} is a directory without a config.json: not a Hugging Face checkpoint.")
            if path.is_dir():
                return _from_pretrained(str(path), name, torch_device, torch_dtype, trust_remote_code, device_map,
                                        None, use_chat_template, local_only=True)
            raise ModelLoadError(f"{name} is a file but not a .gguf model; give a checkpoint directory instead.")
        if not _HUB_ID.match(name):
            known = ", ".join(PRESETS)
            raise ModelLoadError(f"{name!r} is not a preset ({known}), an existing path, or a hub id like owner/name.")
        try:  # a hub id that is already in the local cache loads without the network
            return _from_pretrained(name, name, torch_device, torch_dtype, trust_remote_code, device_map, None,
                                    use_chat_template, local_only=True)
        except (OSError, ValueError):
            pass
        if not _hub_reachable():
            raise ModelLoadError(
                f"Cannot reach the Hugging Face hub to download {name!r}, and it is not in the local cache. "
                "Use a preset or a local path, or connect to the internet."
            )
        return _from_pretrained(name, name, torch_device, torch_dtype, trust_remote_code, device_map, None,
                                use_chat_template, local_only=False)
    except GrainsError:
        raise
    except torch.OutOfMemoryError as exc:
        raise ModelLoadError(f"Not enough memory to load {name!r} on {torch_device}.") from exc
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Could not load {name!r}: {first}") from exc
