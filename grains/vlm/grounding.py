"""Patch heatmaps scored against known object boxes: relevance mass accuracy (CLEVR-XAI: the share of positive
relevance inside the object's box), the pointing game (is the top patch on the object?) and what a random heatmap
would score (the box's share of the grid's area; the share of patches that touch the box).

A patch grid covers a box of the picture (`extra["crop_box"]` of an attribution: the whole image for a plain resize,
wider than the image where the processor padded it). Each cell's relevance is spread evenly over its rectangle, so a
cell half inside an object's box puts half its relevance inside. All boxes are (x0, y0, x1, y1) in image pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from grains.errors import InputError

Box = tuple[float, float, float, float]


def _as_box(box: Sequence[float], what: str) -> Box:
    if len(box) != 4:
        raise InputError(f"The {what} must be (x0, y0, x1, y1), not {tuple(box)}.")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise InputError(f"The {what} {tuple(box)} is empty or not finite.")
    return x0, y0, x1, y1


def _as_grid(grid: Any) -> np.ndarray:
    scores = np.asarray(grid, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise InputError(f"The patch scores must be a non-empty rows x cols grid, not shape {scores.shape}.")
    return np.where(np.isfinite(scores), scores, 0.0)


def cell_overlap(shape: tuple[int, int], grid_box: Sequence[float], object_box: Sequence[float]) -> np.ndarray:
    """The share of each grid cell's area that lies inside the object's box.

    Args:
        shape: (rows, cols) of the patch grid.
        grid_box: (x0, y0, x1, y1) of the picture the grid covers.
        object_box: (x0, y0, x1, y1) of the object, in the same pixels.

    Returns:
        A rows x cols array of shares in [0, 1].

    Example:
        >>> cell_overlap((2, 2), (0, 0, 4, 4), (0, 0, 3, 2)).tolist()
        [[1.0, 0.5], [0.0, 0.0]]
    """
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise InputError(f"The grid must have at least one row and one column, not {rows} x {cols}.")
    gx0, gy0, gx1, gy1 = _as_box(grid_box, "grid box")
    ox0, oy0, ox1, oy1 = _as_box(object_box, "object box")
    xs = np.linspace(gx0, gx1, cols + 1)
    ys = np.linspace(gy0, gy1, rows + 1)
    wx = np.clip(np.minimum(xs[1:], ox1) - np.maximum(xs[:-1], ox0), 0.0, None) / np.diff(xs)
    wy = np.clip(np.minimum(ys[1:], oy1) - np.maximum(ys[:-1], oy0), 0.0, None) / np.diff(ys)
    return np.outer(wy, wx)


def mass_inside(grid: Any, overlap: np.ndarray, sign: int = 1) -> float | None:
    """Relevance mass accuracy: the share of the heatmap's positive (or, with sign=-1, negative) mass inside the box.

    Args:
        grid: rows x cols patch scores.
        overlap: `cell_overlap` for the box (same shape).
        sign: +1 counts the positive scores, -1 the negative ones (as positive mass).

    Returns:
        A share in [0, 1], or None when the heatmap has no mass of that sign.

    Example:
        >>> mass_inside([[3.0, -1.0], [1.0, 0.0]], np.array([[1.0, 1.0], [0.0, 0.0]]))
        0.75
    """
    scores = _as_grid(grid) * (1 if sign >= 0 else -1)
    if scores.shape != overlap.shape:
        raise InputError(f"The grid {scores.shape} and the overlap {overlap.shape} differ in shape.")
    positive = np.clip(scores, 0.0, None)
    total = float(positive.sum())
    return float((positive * overlap).sum() / total) if total > 0 else None


def pointing_hit(grid: Any, overlap: np.ndarray) -> bool | None:
    """The pointing game on a patch grid: does the highest-scoring patch touch the box? None for an all-zero grid.

    Args:
        grid: rows x cols patch scores.
        overlap: `cell_overlap` for the box.

    Returns:
        True when the top patch overlaps the box (ties: the first in row-major order), None when no score is positive.

    Example:
        >>> pointing_hit([[0.0, 2.0], [1.0, 0.0]], np.array([[0.0, 0.3], [0.0, 0.0]]))
        True
    """
    scores = _as_grid(grid)
    if not (scores > 0).any():
        return None
    return bool(overlap.reshape(-1)[int(np.argmax(scores))] > 0)


@dataclass(frozen=True)
class BoxScore:
    """One heatmap scored against one box.

    Args:
        mass_inside: share of the positive patch mass inside the box (None: no positive mass).
        pointing_hit: whether the top patch touches the box (None: no positive score).
        area_share: the box's share of the grid's area: what a uniform (random) heatmap scores on mass_inside.
        pointing_chance: the share of patches that touch the box: what a random top patch scores on the pointing game.
        negative_mass_inside: the share of the negative mass inside the box (None: no negative mass).
    """

    mass_inside: float | None
    pointing_hit: bool | None
    area_share: float
    pointing_chance: float
    negative_mass_inside: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_box(grid: Any, grid_box: Sequence[float], object_box: Sequence[float]) -> BoxScore:
    """Score a patch heatmap against one object's box.

    Args:
        grid: rows x cols patch scores (e.g. `AttributionResult.image_grid`).
        grid_box: the picture region the grid covers (`result.extra["crop_box"]`).
        object_box: the object's box (x0, y0, x1, y1) in the same pixels.

    Returns:
        A BoxScore: mass inside, pointing hit, and the two random-heatmap baselines.

    Example:
        >>> s = score_box([[1.0, 0.0], [0.0, 0.0]], (0, 0, 64, 64), (0, 0, 32, 32))
        >>> s.mass_inside, s.pointing_hit, s.area_share
        (1.0, True, 0.25)
    """
    scores = _as_grid(grid)
    overlap = cell_overlap(scores.shape, grid_box, object_box)
    return BoxScore(mass_inside=mass_inside(scores, overlap), pointing_hit=pointing_hit(scores, overlap),
                    area_share=float(overlap.mean()), pointing_chance=float((overlap > 0).mean()),
                    negative_mass_inside=mass_inside(scores, overlap, sign=-1))


def score_boxes(grid: Any, grid_box: Sequence[float], boxes: dict[str, Sequence[float]]) -> dict[str, BoxScore]:
    """`score_box` for several named boxes (e.g. every object of a generated scene).

    Args:
        grid: rows x cols patch scores.
        grid_box: the picture region the grid covers.
        boxes: name -> (x0, y0, x1, y1).

    Returns:
        name -> BoxScore.

    Example:
        >>> sorted(score_boxes([[1.0]], (0, 0, 8, 8), {"a": (0, 0, 4, 8), "b": (4, 0, 8, 8)}))
        ['a', 'b']
    """
    return {name: score_box(grid, grid_box, box) for name, box in boxes.items()}


def grounding_legend() -> str:
    """What the numbers mean, in one paragraph for a reader (the app and the benchmark print it)."""
    return ("Mass inside the box: the share of the positive (red) patch relevance that falls inside the object's "
            "true box (relevance mass accuracy, CLEVR-XAI). A heatmap that ignored the picture's content would "
            "score the box's share of the image, so compare the two: 0.6 inside a box that covers 0.1 of the "
            "image is 6x chance. Pointing game: whether the single strongest patch touches the box; by chance it "
            "would as often as the share of patches that touch the box.")


def token_places(positions: Sequence[int], image_mask: Sequence[bool], view: dict[str, Any],
                 boxes: dict[str, Sequence[float]]) -> list[dict[str, Any]]:
    """Where selected tokens sit: text, or the image patch's cell and the object box that covers most of it.

    Args:
        positions: token positions in a sequence (e.g. a top-k selection of s+).
        image_mask: per token of that sequence, whether it is an image token.
        view: the first grid view of the prompt's layout (`extras["image_layout"]["views"][0]`: shape, cells, box).
        boxes: name -> (x0, y0, x1, y1) of the scene's objects.

    Returns:
        Per position {"position", "kind": "text" | "patch" | "off-grid", and for a patch "cell" (row, col), "on"
        (the box covering the largest share of the cell, or "background") and "share" (that share)}.

    Example:
        >>> view = {"shape": [2, 2], "cells": [0, 1, 2, 3], "box": [0, 0, 8, 8]}
        >>> token_places([1, 5], [False, True, True, True, True, False], view, {"cube": (0, 0, 4, 4)})[0]["on"]
        'cube'
    """
    image_index = {p: j for j, p in enumerate(i for i, m in enumerate(image_mask) if m)}
    rows, cols = (int(v) for v in view["shape"])
    overlaps = {name: cell_overlap((rows, cols), view["box"], box) for name, box in boxes.items()}
    places = []
    for position in positions:
        if position not in image_index:
            places.append({"position": int(position), "kind": "text"})
            continue
        cell = view["cells"][image_index[position]] if image_index[position] < len(view["cells"]) else -1
        if cell < 0:
            places.append({"position": int(position), "kind": "off-grid"})
            continue
        r, c = divmod(int(cell), cols)
        shares = {name: float(o[r, c]) for name, o in overlaps.items()}
        best = max(shares, key=shares.get) if shares else None
        on = best if best is not None and shares[best] > 0 else "background"
        places.append({"position": int(position), "kind": "patch", "cell": [r, c], "on": on,
                       "share": shares[best] if on != "background" else 0.0})
    return places
