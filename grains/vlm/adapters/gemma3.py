"""Gemma-3 multimodal adapter: the image squashed to the SigLIP size and pooled to a k x k grid."""

from __future__ import annotations

import math
from typing import Any

import torch

from grains.vlm.adapters.base import VLMAdapter
from grains.vlm.adapters.layout import block_sums, grid_view


class Gemma3Adapter(VLMAdapter):
    """Gemma-3: the image is squashed to the SigLIP size and its patches average-pooled to a k x k grid (k^2 =
    mm_tokens_per_image), row-major. Image tokens attend to each other both ways: forward passes get token_type_ids.
    With pan & scan on, only the first (whole-image) block is laid out; the crops' tokens are off-grid.

    Args:
        model: a Gemma3ForConditionalGeneration.

    Example:
        >>> grains.load_model("google/gemma-3-4b-it").adapter.family
        'gemma3'
    """

    family = "gemma3"

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  return_dict=True)
        feats = out.pooler_output
        return feats.reshape(-1, feats.shape[-1])

    def _position_kwargs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                         extras: dict[str, Any] | None, input_ids: torch.Tensor | None) -> dict[str, Any]:
        if input_ids is None:
            return {}
        return {"token_type_ids": (input_ids.to(inputs_embeds.device) == self.image_token_id).long()}

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        out = super().generation_inputs(input_ids, extras)
        out["token_type_ids"] = (out["input_ids"] == self.image_token_id).long()
        return out

    def placeholder(self, processor: Any) -> str:
        return processor.boi_token

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        k = int(round(math.sqrt(int(self.model.config.mm_tokens_per_image))))
        return block_sums(attr.reshape(-1, *attr.shape[-3:]), k, k)

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        n = sum(t == self.image_token_id for t in ids)
        k = int(round(math.sqrt(int(self.model.config.mm_tokens_per_image))))
        cells = [c if c < k * k else -1 for c in range(n)]
        ph, pw = extras["pixel_values"].shape[-2:]
        box = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        return {"image_size": list(image_size), "views": [grid_view("squash", (k, k), cells, box, (int(ph), int(pw)))]}
