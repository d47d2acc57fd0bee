"""The object kinds of the toy scenes: each kind's colour and how its shape is drawn into a mask inside a box."""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive

# name -> base colour; each object's colour is jittered around it (see grains.vlm.toy.scenes)
KIND_COLOURS: dict[str, tuple[int, int, int]] = {
    "circle": (215, 40, 40),
    "square": (40, 80, 215),
    "triangle": (35, 160, 60),
    "star": (240, 175, 10),
    "heart": (230, 80, 165),
    "cross": (125, 50, 190),
    "ring": (245, 120, 20),
    "diamond": (20, 175, 195),
    "moon": (225, 215, 90),
    "hexagon": (130, 85, 40),
}
KINDS: tuple[str, ...] = tuple(KIND_COLOURS)


def _polygon(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]]) -> None:
    draw.polygon([(round(x), round(y)) for x, y in points], fill=255)


def _regular(cx: float, cy: float, radius: float, sides: int, turn: float = -math.pi / 2) -> list[tuple[float, float]]:
    angles = [turn + 2 * math.pi * i / sides for i in range(sides)]
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _circle(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)


def _square(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)


def _triangle(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    _polygon(draw, [((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)])


def _star(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    cx, cy, r = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2 + (x1 - x0) * 0.05, (x1 - x0) / 2
    outer, inner = _regular(cx, cy, r, 5), _regular(cx, cy, r * 0.45, 5, -math.pi / 2 + math.pi / 5)
    _polygon(draw, [p for pair in zip(outer, inner) for p in pair])


def _heart(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    w, h = x1 - x0, y1 - y0
    lobe = w / 2
    draw.ellipse((x0, y0, x0 + lobe, y0 + lobe), fill=255)
    draw.ellipse((x1 - 1 - lobe, y0, x1 - 1, y0 + lobe), fill=255)
    _polygon(draw, [(x0 + w * 0.02, y0 + lobe * 0.62), (x1 - 1 - w * 0.02, y0 + lobe * 0.62),
                    ((x0 + x1 - 1) / 2, y0 + h - 1)])


def _cross(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    arm = max(2, round((x1 - x0) / 3))
    cx0 = x0 + (x1 - x0 - arm) // 2
    cy0 = y0 + (y1 - y0 - arm) // 2
    draw.rectangle((cx0, y0, cx0 + arm - 1, y1 - 1), fill=255)
    draw.rectangle((x0, cy0, x1 - 1, cy0 + arm - 1), fill=255)


def _ring(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    draw.ellipse((x0, y0, x1 - 1, y1 - 1), outline=255, width=max(2, round((x1 - x0) / 5)))


def _diamond(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
    _polygon(draw, [(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)])


def _moon(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    w = x1 - x0
    draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
    shift = round(w * 0.38)
    draw.ellipse((x0 + shift, y0 - round(w * 0.08), x1 - 1 + shift, y1 - 1 - round(w * 0.08)), fill=0)


def _hexagon(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int) -> None:
    _polygon(draw, _regular((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2, 6, 0.0))


DRAWERS: dict[str, Callable[[ImageDraw.ImageDraw, int, int, int, int], None]] = {
    "circle": _circle, "square": _square, "triangle": _triangle, "star": _star, "heart": _heart, "cross": _cross,
    "ring": _ring, "diamond": _diamond, "moon": _moon, "hexagon": _hexagon,
}


def shape_mask(kind: str, box: Box, image_size: int) -> Image.Image:
    """The kind's shape drawn white (255) on black inside `box`, on an image_size x image_size "L" canvas.

    Args:
        kind: one of KINDS.
        box: (x0, y0, x1, y1), x1 and y1 exclusive.
        image_size: the canvas side in pixels.

    Returns:
        The mask as a PIL "L" image (pixels outside the canvas are clipped).

    Example:
        >>> shape_mask("square", (2, 2, 6, 6), 8).getbbox()
        (2, 2, 6, 6)
    """
    canvas = Image.new("L", (image_size, image_size), 0)
    DRAWERS[kind](ImageDraw.Draw(canvas), *box)
    return canvas
