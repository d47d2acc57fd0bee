"""Qwen2-VL / Qwen2.5-VL adapter: dynamic resolution, merged 2x2 patch tokens, 3-D M-RoPE positions."""

from __future__ import annotations

from typing import Any

import torch

from grains.errors import InputError
from grains.vlm.adapters.base import VLMAdapter
from grains.vlm.adapters.layout import grid_view


class Qwen2VLAdapter(VLMAdapter):
    """Qwen2-VL / Qwen2.5-VL: dynamic resolution. The image is resized (no crop) to multiples of patch x merge; each
    visual token is one 2x2 block of patches, row-major on the (grid_h/2, grid_w/2) merged grid. Forward passes get
    3-D M-RoPE position ids computed from input_ids and image_grid_thw.

    Args:
        model: a Qwen2VL- or Qwen2_5_VLForConditionalGeneration.

    Example:
        >>> lm = grains.load_model("Qwen/Qwen2-VL-2B-Instruct")  # lm.adapter is a Qwen2VLAdapter
    """

    family = "qwen2_vl"
    flat_keys = ("pixel_values",)

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  image_grid_thw=extras["image_grid_thw"].to(self.input_device),
                                                  return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)

    def _position_kwargs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                         extras: dict[str, Any] | None, input_ids: torch.Tensor | None) -> dict[str, Any]:
        if input_ids is None:
            raise InputError("Qwen2-VL needs input_ids to place its 3-D positions.")
        ids = input_ids.to(inputs_embeds.device)
        has_image = (ids == self.image_token_id).any(dim=1)
        grid = (extras or {}).get("image_grid_thw")
        mask = attention_mask.to(ids.device) if attention_mask is not None else torch.ones_like(ids)
        if grid is None or not bool(has_image.any()):
            # always explicit: without positions the model would reuse rope deltas cached by an earlier generate()
            text_positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
            return {"position_ids": text_positions.unsqueeze(0).expand(3, -1, -1)}
        grid = grid.to(ids.device)
        n_rows_with_image = int(has_image.sum())
        if grid.shape[0] != n_rows_with_image:  # one example's grid, repeated for every row that has the image
            grid = grid[:1].repeat(n_rows_with_image, 1)
        mm_types = (ids == self.image_token_id).int()
        position_ids, _ = self.model.model.get_rope_index(ids, mm_token_type_ids=mm_types, image_grid_thw=grid,
                                                          attention_mask=mask)
        return {"position_ids": position_ids}

    def placeholder(self, processor: Any) -> str:
        vocab = processor.tokenizer.get_vocab()
        wrap = "<|vision_start|>" in vocab and "<|vision_end|>" in vocab
        return f"<|vision_start|>{processor.image_token}<|vision_end|>" if wrap else processor.image_token

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        out = super().generation_inputs(input_ids, extras)
        if "pixel_values" in out:
            out["mm_token_type_ids"] = (out["input_ids"] == self.image_token_id).int()
        return out

    def _broadcast_channels(self, channels: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        # each row is one patch flattened as (C, T, ps, ps): channel c is a contiguous block
        per_channel = pixel_values.shape[1] // 3
        return channels.repeat_interleave(per_channel).unsqueeze(0).expand_as(pixel_values).clone()

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        merge = int(self.model.config.vision_config.spatial_merge_size)
        return attr.sum(dim=1).reshape(-1, merge * merge).sum(dim=1)  # each token = merge^2 consecutive patches

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        t, gh, gw = (int(v) for v in extras["image_grid_thw"][0].tolist())
        merge = int(self.model.config.vision_config.spatial_merge_size)
        patch = int(self.model.config.vision_config.patch_size)
        rows, cols = gh // merge, gw // merge
        cells = [k % (rows * cols) for k in range(t * rows * cols)]  # frames of one image share the grid
        box = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        return {"image_size": list(image_size),
                "views": [grid_view("dynamic", (rows, cols), cells, box, (gh * patch, gw * patch))]}
