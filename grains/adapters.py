"""Per-architecture adapters: where the decoder layers are and how to run the model from input embeddings.

The text adapter fits every Hugging Face causal LM whose decoder is a ModuleList; VLM adapters (grains.vlm)
subclass it to merge image features into the embeddings and to say which positions are image tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grains.errors import ModelLoadError


def text_config(config: Any) -> Any:
    """The language model's config (the config itself for a text-only model)."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else getattr(config, "text_config", config)


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers: the one whose length is the language model's layer count."""
    n_layers = getattr(text_config(model.config), "num_hidden_layers", None)
    candidates = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
        and (name.endswith("layers") or name.endswith(".h") or name == "h")
        and "vision" not in name and "visual" not in name and "encoder" not in name
    ]
    exact = [c for c in candidates if n_layers is None or len(c[1]) == n_layers]
    if not exact:
        raise ModelLoadError(f"Could not find the decoder layers of {type(model).__name__}.")
    # Prefer the language model's list when several match (e.g. a VLM's projector stack).
    exact.sort(key=lambda c: ("language_model" not in c[0], len(c[0])))
    return exact[0][1]


class TextAdapter:
    """Runs a causal LM from input embeddings and exposes its decoder layers."""

    is_vlm = False

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = find_decoder_layers(model)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(text_config(self.model.config).hidden_size)

    @property
    def input_device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def embed_ids(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> torch.Tensor:
        """Input embeddings [B, T, D] as the decoder sees them (scaled for Gemma, merged with images for VLMs)."""
        return self.model.get_input_embeddings()(input_ids.to(self.input_device))

    def forward_embeds(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        extras: dict[str, Any] | None = None,
        input_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Forward pass from embeddings; kwargs go to the model (logits_to_keep, output_hidden_states, ...)."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, **kwargs)

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments for model.generate for a batch of prompt ids."""
        return {"input_ids": input_ids.to(self.input_device)}

    def expand_extras(self, extras: dict[str, Any] | None, batch: int) -> dict[str, Any]:
        """Extras (pixel values...) repeated for a batch of `batch` copies of one example. None for text."""
        return {}
