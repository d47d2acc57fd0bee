"""Grid geometry of the VLM adapters: where each image token sits on the picture as the processor saw it, and the
pure image summary of an attribution (the image-token scores laid on those grids).

A view is a rows x cols grid with one flat cell per image token (-1: off-grid) and its box on the original image
(x0, y0, x1, y1), which may reach outside the picture where the processor padded it.
"""

from __future__ import annotations

from typing import Any

import torch


def grid_view(name: str, shape: tuple[int, int], cells: list[int], box: tuple[float, float, float, float],
          processed_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """One view of the image: a rows x cols grid, each image token's flat cell (-1: none), its box on the image.

    Args:
        name: the view's name ("crop", "tiles", "base", ...).
        shape: (rows, cols) of the grid.
        cells: per image token, its row-major cell, or -1 when it has no place on this grid.
        box: (x0, y0, x1, y1) the grid covers, in original-image pixels.
        processed_size: (height, width) of the image as the processor made it.

    Returns:
        The view as a JSON-safe dict.

    Example:
        >>> grid_view("crop", (2, 2), [-1, 0, 1, 2, 3], (0, 0, 64, 64))["cells"]
        [-1, 0, 1, 2, 3]
    """
    return {"name": name, "shape": [int(shape[0]), int(shape[1])], "cells": [int(c) for c in cells],
            "box": [float(v) for v in box], "processed_size": list(processed_size) if processed_size else None}


def _size_dict(size: Any) -> dict[str, Any]:
    if size is None:
        return {}
    if isinstance(size, dict):
        return dict(size)
    return {k: getattr(size, k) for k in ("height", "width", "shortest_edge", "longest_edge")
            if getattr(size, k, None) is not None}


def block_sums(frames: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Per frame, sums over channels and over each of rows x cols pixel blocks, row-major.

    Args:
        frames: a pixel attribution [F, C, H, W].
        rows: blocks down.
        cols: blocks across.

    Returns:
        [F * rows * cols] block sums (pixels beyond a whole block are dropped).

    Example:
        >>> block_sums(torch.ones(1, 3, 4, 4), 2, 2)
        tensor([12., 12., 12., 12.])
    """
    f, _, h, w = frames.shape
    summed = frames.sum(dim=1)[:, : (h // rows) * rows, : (w // cols) * cols]
    return summed.reshape(f, rows, h // rows, cols, w // cols).sum(dim=(2, 4)).reshape(-1)


def resize_crop_box(width: int, height: int, image_processor: Any) -> tuple[tuple[float, ...], tuple[int, int]]:
    """The box of the original image seen after CLIP-style optional pad-to-square, resize and centre crop.

    Args:
        width: the original image's width in pixels.
        height: its height.
        image_processor: a transformers image processor (do_pad, size, do_resize, crop_size, do_center_crop).

    Returns:
        ((x0, y0, x1, y1) in original pixels, (height, width) of the processed image).

    Example:
        >>> ip = SimpleNamespace(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        ...                      do_center_crop=True)
        >>> resize_crop_box(672, 448, ip)
        ((112.0, 0.0, 560.0, 448.0), (336, 336))
    """
    x0, y0, w, h = 0.0, 0.0, float(width), float(height)
    if getattr(image_processor, "do_pad", False):  # LLaVA pads to a square first
        side = max(w, h)
        x0, y0, w, h = (w - side) / 2, (h - side) / 2, side, side
    size = _size_dict(getattr(image_processor, "size", None))
    if getattr(image_processor, "do_resize", True) and size:
        if "shortest_edge" in size and size.get("shortest_edge"):
            scale = size["shortest_edge"] / min(w, h)
            sx = sy = scale
        else:
            sx, sy = size["width"] / w, size["height"] / h
    else:
        sx = sy = 1.0
    rw, rh = w * sx, h * sy
    crop = _size_dict(getattr(image_processor, "crop_size", None))
    if getattr(image_processor, "do_center_crop", False) and crop:
        cw, ch = min(crop["width"], rw), min(crop["height"], rh)
        cx, cy = x0 + w / 2, y0 + h / 2
        box = (cx - cw / sx / 2, cy - ch / sy / 2, cx + cw / sx / 2, cy + ch / sy / 2)
        return box, (int(round(ch)), int(round(cw)))
    return (x0, y0, x0 + w, y0 + h), (int(round(rh)), int(round(rw)))


def unpad_range(original: tuple[int, int], current: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows [r0, r1) and cols [c0, c1) that LLaVA-NeXT's unpad_image keeps of a feature grid.

    Args:
        original: the image's (height, width).
        current: the feature grid's (rows, cols).

    Returns:
        (r0, r1, c0, c1).

    Example:
        >>> unpad_range((100, 200), (24, 24))  # a wide image: rows of padding above and below
        (6, 18, 0, 24)
    """
    oh, ow = original
    ch, cw = current
    if ow / oh > cw / ch:
        new_h = int(round(oh * (cw / ow), 7))
        pad = (ch - new_h) // 2
        return pad, ch - pad, 0, cw
    new_w = int(round(ow * (ch / oh), 7))
    pad = (cw - new_w) // 2
    return 0, ch, pad, cw - pad


def image_summary(scores: list[float], image_mask: list[bool], response_total: float,
                  layout: dict[str, Any] | None, family: str) -> tuple[list[list[float]] | None, dict[str, Any]]:
    """The prompt's image-token scores laid on the layout's grids, and the image share; nothing is written anywhere.

    Args:
        scores: the prompt's per-token scores (AttributionResult.scores).
        image_mask: which prompt tokens are image tokens.
        response_total: the summed scores of the answer tokens of s+ and s- (they count as text).
        layout: the prompt's `image_layout` (None: no grid, only the share and totals).
        family: the adapter family, recorded in the summary.

    Returns:
        (grid, summary): the first view's rows x cols grid (None without a layout) and the fields for
        `result.extra` (image share, image and text score, the grid's shape and box, the other views).

    Example:
        >>> grid, summary = image_summary([0.5, 1.0, -2.0], [False, True, True], 0.0, None, "llava")
        >>> grid is None, summary["image_token_count"]
        (True, 2)
    """
    positions = [i for i, m in enumerate(image_mask) if m]
    image_scores = [float(scores[i]) for i in positions]
    image_sum = sum(image_scores)
    text_sum = sum(s for i, s in enumerate(scores) if not image_mask[i]) + response_total
    abs_image = sum(abs(s) for s in image_scores)
    abs_all = sum(abs(s) for s in scores)
    extra: dict[str, Any] = {"image_token_count": len(positions),
                             "image_share": abs_image / abs_all if abs_all > 0 else 0.0,
                             "image_score": image_sum, "text_score": text_sum, "family": family}
    if layout is None:
        return None, extra
    grids = {}
    for view in layout["views"]:
        rows, cols = view["shape"]
        grid = torch.zeros(rows * cols, dtype=torch.float64)
        for score, cell in zip(image_scores, view["cells"]):
            if cell >= 0:
                grid[cell] += score
        grids[view["name"]] = grid.view(rows, cols).tolist()
    main = layout["views"][0]
    off_grid = sum(s for s, c in zip(image_scores, main["cells"]) if c < 0)
    extra.update({
        "grid_shape": list(main["shape"]), "grid_view": main["name"], "crop_box": list(main["box"]),
        "image_size": list(layout["image_size"]), "processed_size": main.get("processed_size"),
        "off_grid_score": off_grid,
        "views": {v["name"]: {"grid": grids[v["name"]], "shape": v["shape"], "box": v["box"]}
                  for v in layout["views"][1:]},
    })
    return grids[main["name"]], extra
