"""LLaVA-1.5 and LLaVA-NeXT adapters: one CLIP view, or anyres tiles stitched into one grid plus the base view."""

from __future__ import annotations

import math
from typing import Any

import torch

from grains.vlm.adapters.base import LAYOUT_KEY, VLMAdapter
from grains.vlm.adapters.layout import block_sums, grid_view, resize_crop_box, unpad_range


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: one CLIP view (pad-to-square if the processor does it, shortest-edge resize, centre crop), its
    patch grid row-major; with the "full" feature strategy the CLS token is off-grid.

    Args:
        model: a LlavaForConditionalGeneration.

    Example:
        >>> lm = grains.load_model("llava-hf/llava-1.5-7b-hf")  # lm.adapter is a LlavaAdapter
    """

    family = "llava"

    def _vision_args(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"vision_feature_layer": cfg.vision_feature_layer,
                "vision_feature_select_strategy": cfg.vision_feature_select_strategy}

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  return_dict=True, **self._vision_args())
        return torch.cat(list(out.pooler_output), dim=0)

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        main = extras[LAYOUT_KEY]["views"][0]
        rows, cols = main["shape"]
        grid = block_sums(attr.reshape(-1, *attr.shape[-3:]), rows, cols)
        return torch.cat([grid.new_zeros(len(main["cells"]) - grid.numel()), grid])  # CLS ("full"): no pixels

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        n = sum(t == self.image_token_id for t in ids)
        ph, pw = extras["pixel_values"].shape[-2:]
        patch = int(self.model.config.vision_config.patch_size)
        rows, cols = int(ph) // patch, int(pw) // patch
        box, processed = resize_crop_box(image_size[0], image_size[1], processor.image_processor)
        extra = n - rows * cols
        cells = [-1] * extra + list(range(rows * cols))
        return {"image_size": list(image_size), "views": [grid_view("crop", (rows, cols), cells, box, processed)]}


class LlavaNextAdapter(LlavaAdapter):
    """LLaVA-NeXT (anyres): the heatmap is the high-resolution tiles STITCHED into one grid, unpadded as the model
    does (so it covers the picture, not the letterbox); the per-row newline tokens are off-grid. The low-resolution
    base view (the whole image squashed to one tile) is the second view, "base".

    Args:
        model: a LlavaNextForConditionalGeneration.

    Example:
        >>> lm = grains.load_model("llava-hf/llava-v1.6-mistral-7b-hf")  # lm.adapter is a LlavaNextAdapter
    """

    family = "llava_next"

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(
            pixel_values=extras["pixel_values"].to(self.input_device), image_sizes=extras["image_sizes"],
            return_dict=True, **self._vision_args())
        return torch.cat(list(out.pooler_output), dim=0)

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        from transformers.image_processing_utils import select_best_resolution

        cfg = self.model.config
        width, height = image_size
        n = sum(t == self.image_token_id for t in ids)
        tile = int(cfg.vision_config.image_size)
        patch = int(cfg.vision_config.patch_size)
        side = tile // patch
        pinpoints = [list(p) for p in cfg.image_grid_pinpoints]
        bh, bw = select_best_resolution((height, width), pinpoints)
        r0, r1, c0, c1 = unpad_range((height, width), ((bh // tile) * side, (bw // tile) * side))
        rows, cols = r1 - r0, c1 - c0
        base_count = n - rows * (cols + 1)
        base_cells = [-1] * (base_count - side * side) + list(range(side * side))
        tile_cells = [-1] * base_count
        for r in range(rows):
            tile_cells += [r * cols + c for c in range(cols)] + [-1]
        # canvas pixels -> original pixels: the image was resized to fit (bh, bw) and centred
        scale = min(bw / width, bh / height)
        if bw / width < bh / height:
            nw, nh = bw, min(math.ceil(height * scale), bh)
        else:
            nh, nw = bh, min(math.ceil(width * scale), bw)
        px, py = (bw - nw) // 2, (bh - nh) // 2
        fx, fy = width / nw, height / nh
        box = ((c0 * patch - px) * fx, (r0 * patch - py) * fy, (c1 * patch - px) * fx, (r1 * patch - py) * fy)
        base_cells_full = base_cells + [-1] * (n - len(base_cells))
        views = [grid_view("tiles", (rows, cols), tile_cells, box, (bh, bw)),
                 grid_view("base", (side, side), base_cells_full, (0.0, 0.0, float(width), float(height)),
                           (tile, tile))]
        anyres = {"tiles": [bh // tile, bw // tile], "unpad": [r0, r1, c0, c1], "side": side,
                  "base_count": base_count}
        return {"image_size": list(image_size), "views": views, "anyres": anyres}

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        info = extras[LAYOUT_KEY]["anyres"]
        side, (nph, npw), (r0, r1, c0, c1) = info["side"], info["tiles"], info["unpad"]
        frames = attr.reshape(-1, *attr.shape[-3:])
        base = block_sums(frames[:1], side, side)
        tiles = block_sums(frames[1:1 + nph * npw], side, side).reshape(nph, npw, side, side)
        stitched = tiles.permute(0, 2, 1, 3).reshape(nph * side, npw * side)[r0:r1, c0:c1]
        with_newlines = torch.cat([stitched, stitched.new_zeros(stitched.shape[0], 1)], dim=1).reshape(-1)
        lead = base.new_zeros(info["base_count"] - base.numel())
        return torch.cat([lead, base, with_newlines])
