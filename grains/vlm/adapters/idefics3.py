"""Idefics3 / SmolVLM adapter: rows x cols tiles stitched into one grid plus a global view."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grains.vlm.adapters.base import VLMAdapter
from grains.vlm.adapters.layout import block_sums, grid_view


class Idefics3Adapter(VLMAdapter):
    """Idefics3 / SmolVLM: the image is resized to whole tiles and split into rows x cols tiles plus a global view
    (the whole image squashed to one tile). The heatmap STITCHES the tiles into one grid (each tile k x k tokens after
    the pixel shuffle, row-major); the global view is the second view, "global". Unsplit images have only "global".

    Args:
        model: an Idefics3- or SmolVLMForConditionalGeneration.

    Example:
        >>> lm = grains.load_model("HuggingFaceTB/SmolVLM-256M-Instruct")  # lm.adapter is a Idefics3Adapter
    """

    family = "idefics3"

    def language_model(self) -> nn.Module:
        return self.model.model.text_model

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        mask = extras.get("pixel_attention_mask")
        out = self.model.model.get_image_features(
            pixel_values=extras["pixel_values"].to(self.input_device),
            pixel_attention_mask=mask.to(self.input_device) if mask is not None else None, return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        cfg = self.model.config
        k = int(cfg.vision_config.image_size) // int(cfg.vision_config.patch_size) // int(cfg.scale_factor)
        return block_sums(attr.reshape(-1, *attr.shape[-3:]), k, k)  # frames: tiles row-major, then global

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        cfg = self.model.config
        k = int(cfg.vision_config.image_size) // int(cfg.vision_config.patch_size) // int(cfg.scale_factor)
        seq = k * k
        n = sum(t == self.image_token_id for t in ids)
        tok = processor.tokenizer
        present = set(ids)
        rows = cols = 0
        for r in range(1, 7):
            for c in range(1, 7):
                tid = tok.convert_tokens_to_ids(f"<row_{r}_col_{c}>")
                if isinstance(tid, int) and tid in present and tid != tok.unk_token_id:
                    rows, cols = max(rows, r), max(cols, c)
        tile_px = int(cfg.vision_config.image_size)
        full = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        global_cells = [-1] * (n - seq) + list(range(seq))
        global_view = grid_view("global", (k, k), global_cells, full, (tile_px, tile_px))
        if rows * cols == 0 or n != (rows * cols + 1) * seq:
            return {"image_size": list(image_size), "views": [global_view]}
        cells = []
        for r in range(rows):
            for c in range(cols):
                cells += [(r * k + i) * (cols * k) + c * k + j for i in range(k) for j in range(k)]
        cells += [-1] * seq
        tiles = grid_view("tiles", (rows * k, cols * k), cells, full, (rows * tile_px, cols * tile_px))
        return {"image_size": list(image_size), "views": [tiles, global_view]}
