"""Patch-attribution overlays on photos, and the diverging colour map shared by every attribution view.

Colours: blue = negative (toward the rejected answer), white = 0, red = positive (toward the chosen answer),
symmetric around 0 and scaled by the largest |score| unless a `vmax` is given.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from grains.errors import InputError

# (position in [-1, 1], RGB): a five-stop blue-white-red map (ColorBrewer RdBu ends, pure white at 0).
DIVERGING_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (-1.0, (33, 102, 172)),
    (-0.5, (146, 197, 222)),
    (0.0, (255, 255, 255)),
    (0.5, (244, 165, 130)),
    (1.0, (178, 24, 43)),
)
NAN_RGB = (160, 160, 160)  # non-finite scores are shown grey, never as "no effect" white

_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}


def symmetric_vmax(values: np.ndarray | list[float]) -> float:
    """The colour scale's half-range: max |finite value|, or 1.0 when there is none or it is 0."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.abs(arr[np.isfinite(arr)])
    vmax = float(finite.max()) if finite.size else 0.0
    return vmax if vmax > 0 else 1.0


def diverging_rgb(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """uint8 colours of shape values.shape + (3,): blue for negative, white at 0, red for positive.

    `vmax` is the |value| that gets the full colour (default: the largest finite |value|); values beyond it
    are clipped. NaN and infinite values are grey.
    """
    arr = np.asarray(values, dtype=np.float64)
    if vmax is None:
        vmax = symmetric_vmax(arr)
    if not (math.isfinite(vmax) and vmax > 0):
        raise InputError(f"The colour scale maximum must be a positive number, not {vmax}.")
    finite = np.isfinite(arr)
    t = np.clip(np.where(finite, arr, 0.0) / vmax, -1.0, 1.0)
    positions = np.array([p for p, _ in DIVERGING_STOPS])
    out = np.empty(arr.shape + (3,), dtype=np.float64)
    for channel in range(3):
        out[..., channel] = np.interp(t, positions, [rgb[channel] for _, rgb in DIVERGING_STOPS])
    out[~finite] = NAN_RGB
    return np.rint(out).astype(np.uint8)


def rgb_hex(rgb: np.ndarray | tuple[int, int, int]) -> str:
    """'#rrggbb' for one RGB triple."""
    r, g, b = (int(c) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def overlay_legend() -> str:
    """One sentence explaining the overlay's colours."""
    return ("red = pushes toward the chosen answer, blue = toward the rejected answer; "
            "white = no effect (colours are symmetric around 0, scaled by the largest |score|).")


def format_score(value: float) -> str:
    """Compact signed label for a colour-bar end: 3 significant digits."""
    if value == 0:
        return "0"
    return f"{value:+.3g}"


def _check_box(box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    if box is None:
        return 0, 0, width, height
    if len(box) != 4:
        raise InputError("The overlay box must be (left, top, right, bottom) in image pixels.")
    left, top, right, bottom = (int(round(v)) for v in box)
    if right <= left or bottom <= top or right <= 0 or bottom <= 0 or left >= width or top >= height:
        raise InputError(f"The overlay box {tuple(box)} does not overlap the {width}x{height} image.")
    return left, top, right, bottom


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _draw_colorbar(canvas: Image.Image, vmax: float) -> Image.Image:
    """Inset a small colour bar (-vmax, 0, +vmax) in the bottom-right corner, on a semi-opaque white panel.
    Images too small to hold a legible bar (under 80x40 px) are returned unchanged."""
    width, height = canvas.size
    if width < 80 or height < 40:
        return canvas
    font_px = max(10, min(24, height // 30))
    font = _font(font_px)
    pad = max(3, font_px // 3)
    bar_w = max(60, min(width // 3, 320))
    bar_h = max(6, font_px // 2 + 2)
    labels = [format_score(-vmax), "0", format_score(vmax)]
    draw_probe = ImageDraw.Draw(canvas)
    text_h = max(draw_probe.textbbox((0, 0), s, font=font)[3] for s in labels)
    panel_w, panel_h = bar_w + 2 * pad, bar_h + text_h + 3 * pad
    if panel_w > width - 2 or panel_h > height - 2:
        return canvas
    x0, y0 = width - panel_w - pad, height - panel_h - pad
    x0, y0 = max(x0, 0), max(y0, 0)

    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((x0, y0, x0 + panel_w - 1, y0 + panel_h - 1), fill=(255, 255, 255, 200))
    ramp = diverging_rgb(np.linspace(-1.0, 1.0, bar_w), vmax=1.0)
    strip = Image.fromarray(np.repeat(ramp[None, :, :], bar_h, axis=0)).convert("RGBA")
    bx, by = x0 + pad, y0 + pad
    layer.paste(strip, (bx, by))
    draw.rectangle((bx - 1, by - 1, bx + bar_w, by + bar_h), outline=(60, 60, 60, 255))
    ty = by + bar_h + pad // 2
    for label, anchor_x, align in ((labels[0], bx, "l"), (labels[1], bx + bar_w // 2, "m"),
                                   (labels[2], bx + bar_w, "r")):
        tw = draw.textbbox((0, 0), label, font=font)[2]
        tx = anchor_x if align == "l" else anchor_x - tw // 2 if align == "m" else anchor_x - tw
        draw.text((tx, ty), label, fill=(20, 20, 20, 255), font=font)
    return Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB")


def patch_overlay(image: Image.Image, grid: np.ndarray, alpha: float = 0.5, colorbar: bool = True,
                  box: tuple[int, int, int, int] | None = None, resample: str = "nearest",
                  vmax: float | None = None) -> Image.Image:
    """The photo with a patch-score heatmap blended over it; the result has exactly the photo's size.

    - `grid`: rows x cols of patch scores (e.g. the image half of the IG scores on the patch grid).
    - `alpha`: heatmap opacity in [0, 1]; 0 gives the photo back.
    - `box`: (left, top, right, bottom) region of the photo the grid covers (processors that crop or pad);
      outside it the photo is left untouched. Default: the whole photo.
    - `resample`: "nearest" (sharp patches) or "bilinear" (scores interpolated before colouring).
    - `vmax`: colour-scale half-range (default: max |score| of the grid), so several overlays can share a scale.
    - `colorbar`: draws the colour bar as an inset panel in the bottom-right corner (images under 80x40 px
      get none); pass False for the pure overlay.
    """
    if not isinstance(image, Image.Image):
        raise InputError("The overlay needs a PIL image.")
    scores = np.asarray(grid, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise InputError(f"The patch scores must be a non-empty 2-D grid (rows x cols), not shape {scores.shape}.")
    if not (0.0 <= float(alpha) <= 1.0):
        raise InputError(f"The overlay opacity must be between 0 and 1, not {alpha}.")
    if resample not in _RESAMPLE:
        raise InputError(f"Resampling must be one of {', '.join(_RESAMPLE)}, not {resample!r}.")
    scale = symmetric_vmax(scores) if vmax is None else float(vmax)

    base = image.convert("RGB")
    left, top, right, bottom = _check_box(box, base.size)
    region_size = (right - left, bottom - top)
    finite = np.isfinite(scores)
    score_img = Image.fromarray(np.where(finite, scores, 0.0).astype(np.float32))
    resized = np.asarray(score_img.resize(region_size, _RESAMPLE[resample]), dtype=np.float64)
    if not finite.all():  # keep missing patches grey: carry the NaN mask over with nearest resampling
        mask_img = Image.fromarray((~finite).astype(np.uint8) * 255)
        nan_mask = np.asarray(mask_img.resize(region_size, Image.Resampling.NEAREST)) > 0
        resized = np.where(nan_mask, np.nan, resized)
    heat = diverging_rgb(resized, vmax=scale).astype(np.float64)
    # The box may reach past the photo (processors that pad to a square): the grid covers the whole box and
    # only the part that lies on the photo is drawn.
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(right, base.width), min(bottom, base.height)
    heat = heat[y0 - top:y1 - top, x0 - left:x1 - left]

    out = np.asarray(base, dtype=np.float64).copy()
    patch = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = (1.0 - alpha) * patch + alpha * heat
    result = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    if colorbar:
        result = _draw_colorbar(result, scale)
    return result


def outline_boxes(image: Image.Image, boxes: list[tuple[str, tuple[float, float, float, float], str]],
                  width: int | None = None) -> Image.Image:
    """The image with each box outlined in its colour and labelled at its top-left corner (a copy; boxes in image
    pixels as (x0, y0, x1, y1)). A dark halo under each outline keeps it visible over red and blue patches.

    Args:
        image: a PIL image.
        boxes: (label, box, colour as '#rrggbb') per box; an empty label draws no tag.
        width: the outline's width in pixels (default: about 1% of the short side, at least 2).

    Returns:
        A new RGB image of the same size.

    Example:
        >>> outline_boxes(Image.new("RGB", (64, 64), "white"), [("cube", (8, 8, 40, 40), "#00a000")]).getpixel((8, 20))
        (0, 160, 0)
    """
    if not isinstance(image, Image.Image):
        raise InputError("The outlines need a PIL image.")
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = width or max(2, min(out.size) // 100)
    font = _font(max(10, min(out.size) // 22))
    for label, box, colour in boxes:
        if len(box) != 4:
            raise InputError("A box must be (x0, y0, x1, y1) in image pixels.")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        draw.rectangle((x0 - 1, y0 - 1, x1 + line, y1 + line), outline=(20, 20, 20), width=line + 2)
        draw.rectangle((x0, y0, x1 + line - 1, y1 + line - 1), outline=colour, width=line)
        if label:
            tx, ty = max(x0, 0), max(y0 - font.size - 4 if hasattr(font, "size") else y0 - 14, 0)
            text_box = draw.textbbox((tx + 2, ty + 1), label, font=font)
            draw.rectangle((text_box[0] - 2, text_box[1] - 1, text_box[2] + 2, text_box[3] + 1), fill=colour)
            draw.text((tx + 2, ty + 1), label, fill=(255, 255, 255), font=font)
    return out


def scene_overlay(image: Image.Image, grid: np.ndarray, grid_box: tuple[float, float, float, float] | None,
                  boxes: list[tuple[str, tuple[float, float, float, float], str]], alpha: float = 0.5,
                  min_side: int = 384) -> Image.Image:
    """A patch heatmap over a small picture with true object boxes outlined on top: the picture is enlarged (nearest
    neighbour, a whole factor) until its short side reaches `min_side`, so patches, outlines, labels and the colour
    bar stay legible on generated scenes of a few dozen pixels.

    Args:
        image: the picture.
        grid: rows x cols patch scores.
        grid_box: the region the grid covers (None: the whole picture), in the picture's pixels.
        boxes: (label, box, colour) per object, in the picture's pixels.
        alpha: heatmap opacity.
        min_side: the short side to enlarge to.

    Returns:
        The enlarged overlay with outlines.

    Example:
        >>> scene_overlay(Image.new("RGB", (64, 64)), np.ones((4, 4)), None, [("cube", (0, 0, 16, 16), "#000000")]).size
        (384, 384)
    """
    factor = max(1, -(-int(min_side) // max(1, min(image.size))))
    big = image.convert("RGB").resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    scaled_grid_box = None if grid_box is None else tuple(v * factor for v in grid_box)
    heat = patch_overlay(big, grid, alpha=alpha, box=scaled_grid_box)
    return outline_boxes(heat, [(label, tuple(v * factor for v in box), colour) for label, box, colour in boxes])
