"""Patch overlays keep the photo's size, colour positive patches red and negative ones blue, respect the box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grains.errors import InputError
from grains.viz.overlay import DIVERGING_STOPS, diverging_rgb, overlay_legend, patch_overlay

ROOT = Path(__file__).resolve().parents[2]


def _photo(name: str) -> Image.Image:
    return Image.open(ROOT / "assets" / "images" / name).convert("RGB")  # shipped: a missing photo is a failure


def _red_minus_blue(img: Image.Image, box: tuple[int, int, int, int]) -> float:
    arr = np.asarray(img.crop(box), dtype=np.float64)
    return float((arr[..., 0] - arr[..., 2]).mean())


@pytest.mark.parametrize("name", ["astronaut.jpg", "chelsea.jpg", "motorcycle.jpg"])
@pytest.mark.parametrize("colorbar", [True, False])
def test_overlay_keeps_photo_size(name: str, colorbar: bool) -> None:
    photo = _photo(name)
    out = patch_overlay(photo, np.random.default_rng(0).normal(size=(3, 5)), colorbar=colorbar)
    assert out.size == photo.size
    assert out.mode == "RGB"


def test_positive_patch_redder_negative_patch_bluer_than_zero_patch() -> None:
    photo = _photo("chelsea.jpg")  # 451 x 300: a 3x3 grid gives ~150 x 100 px cells
    grid = np.zeros((3, 3))
    grid[0, 0] = 5.0
    grid[0, 2] = -5.0
    out = patch_overlay(photo, grid, alpha=0.5, colorbar=False)
    w, h = photo.size
    cells = {"pos": (0, 0, w // 3, h // 3), "neg": (w - w // 3, 0, w, h // 3), "zero": (w // 3, h // 3, 2 * w // 3,
                                                                                           2 * h // 3)}
    # Shift of R - B relative to the photo, so the photo's own colours cannot decide the result.
    shift = {k: _red_minus_blue(out, b) - 0.5 * _red_minus_blue(photo, b) for k, b in cells.items()}
    assert shift["pos"] > shift["zero"] + 50
    assert shift["neg"] < shift["zero"] - 50
    assert abs(shift["zero"]) < 2  # white is neutral in R - B


def test_full_opacity_gives_the_colour_map_exactly() -> None:
    grey = Image.new("RGB", (40, 20), (128, 128, 128))
    out = np.asarray(patch_overlay(grey, np.array([[-2.0, 0.0, 2.0, 1.0]]), alpha=1.0, colorbar=False))
    assert tuple(out[10, 5]) == DIVERGING_STOPS[0][1]  # -max: blue end
    assert tuple(out[10, 15]) == (255, 255, 255)  # 0: white
    assert tuple(out[10, 25]) == DIVERGING_STOPS[-1][1]  # +max: red end
    assert tuple(out[10, 35]) == DIVERGING_STOPS[3][1]  # +max/2


def test_zero_alpha_returns_photo_unchanged() -> None:
    photo = _photo("astronaut.jpg")
    out = patch_overlay(photo, np.ones((4, 4)), alpha=0.0, colorbar=False)
    assert np.array_equal(np.asarray(out), np.asarray(photo))


def test_box_limits_the_heatmap_to_its_region() -> None:
    grey = Image.new("RGB", (100, 60), (128, 128, 128))
    out = np.asarray(patch_overlay(grey, np.full((2, 2), 3.0), alpha=1.0, colorbar=False, box=(20, 10, 80, 50)))
    assert tuple(out[30, 50]) == DIVERGING_STOPS[-1][1]
    assert tuple(out[5, 5]) == (128, 128, 128)  # outside the box: untouched
    assert tuple(out[55, 90]) == (128, 128, 128)
    assert tuple(out[30, 10]) == (128, 128, 128)


def test_bilinear_interpolates_between_patches() -> None:
    grey = Image.new("RGB", (200, 10), (0, 0, 0))
    grid = np.array([[-1.0, 1.0]])
    nearest = np.asarray(patch_overlay(grey, grid, alpha=1.0, colorbar=False, resample="nearest"))
    smooth = np.asarray(patch_overlay(grey, grid, alpha=1.0, colorbar=False, resample="bilinear"))
    # nearest: two flat halves; bilinear: a ramp whose middle is near white
    assert len({tuple(p) for p in nearest[5]}) == 2
    assert smooth[5, 100].min() > 200


def test_colorbar_is_an_inset_in_the_bottom_right() -> None:
    photo = _photo("motorcycle.jpg")
    grid = np.random.default_rng(1).normal(size=(6, 6))
    plain = np.asarray(patch_overlay(photo, grid, colorbar=False), dtype=np.int16)
    barred = np.asarray(patch_overlay(photo, grid, colorbar=True), dtype=np.int16)
    h, w = plain.shape[:2]
    assert np.array_equal(plain[: h // 2, : w // 2], barred[: h // 2, : w // 2])
    assert np.abs(plain[h - h // 6:, w - w // 3:] - barred[h - h // 6:, w - w // 3:]).sum() > 0


def test_tiny_image_gets_no_colorbar_and_keeps_size() -> None:
    img = Image.new("RGB", (1, 1), (10, 20, 30))
    out = patch_overlay(img, np.array([[1.0]]), colorbar=True)
    assert out.size == (1, 1)


def test_nan_patch_is_grey_not_white() -> None:
    grey = Image.new("RGB", (20, 10), (0, 0, 0))
    out = np.asarray(patch_overlay(grey, np.array([[np.nan, 1.0]]), alpha=1.0, colorbar=False))
    assert tuple(out[5, 2]) == (160, 160, 160)


def test_diverging_rgb_is_symmetric_and_centred() -> None:
    colours = diverging_rgb(np.array([-3.0, 0.0, 3.0, 1.5]))
    assert colours.shape == (4, 3) and colours.dtype == np.uint8
    assert tuple(colours[1]) == (255, 255, 255)
    assert colours[2, 0] > colours[2, 2] and colours[0, 2] > colours[0, 0]
    # explicit vmax clips
    assert tuple(diverging_rgb(np.array([10.0]), vmax=1.0)[0]) == DIVERGING_STOPS[-1][1]
    # all-zero input does not divide by zero
    assert tuple(diverging_rgb(np.zeros(2))[0]) == (255, 255, 255)


def test_bad_inputs_raise_input_error() -> None:
    img = Image.new("RGB", (10, 10))
    with pytest.raises(InputError):
        patch_overlay(img, np.zeros(4))
    with pytest.raises(InputError):
        patch_overlay(img, np.zeros((2, 2)), alpha=1.5)
    with pytest.raises(InputError):
        patch_overlay(img, np.zeros((2, 2)), box=(20, 20, 30, 30))
    with pytest.raises(InputError):
        patch_overlay(img, np.zeros((2, 2)), resample="cubic")


def test_legend_names_both_colours() -> None:
    text = overlay_legend()
    assert "red = pushes toward the chosen answer" in text
    assert "blue = toward the rejected answer" in text


def test_box_reaching_past_the_photo_keeps_the_grid_geometry():
    """A padded-to-square processor's box extends beyond the photo: the grid must span the whole box, so the
    photo shows only the cells that lie on it (here the bottom half of a 2x1 grid is off the photo)."""
    import numpy as np
    from PIL import Image

    from grains.viz.overlay import patch_overlay

    photo = Image.new("RGB", (100, 50), (128, 128, 128))
    grid = np.array([[1.0], [-1.0]])  # top cell red, bottom cell blue
    out = np.asarray(patch_overlay(photo, grid, alpha=1.0, colorbar=False, box=(0, 0, 100, 100))).astype(int)
    assert out.shape[:2] == (50, 100)
    assert (out[..., 0] - out[..., 2] > 100).all()  # all of the photo is under the red top cell


def test_outline_boxes_draws_each_box_in_its_colour_and_leaves_the_rest():
    from grains.viz.overlay import outline_boxes

    img = Image.new("RGB", (100, 100), (255, 255, 255))
    out = outline_boxes(img, [("a", (20, 30, 60, 70), "#00a000"), ("", (70, 70, 90, 90), "#7b2cbf")], width=2)
    assert out.getpixel((20, 50)) == (0, 160, 0)  # left edge of box a
    assert out.getpixel((70, 80)) == (123, 44, 191)  # left edge of box b
    assert out.getpixel((40, 50)) == (255, 255, 255)  # inside a box: untouched
    assert img.getpixel((20, 50)) == (255, 255, 255)  # the input is not drawn on


def test_scene_overlay_enlarges_a_small_scene_and_keeps_the_grid_on_its_box():
    from grains.viz.overlay import scene_overlay

    img = Image.new("RGB", (64, 64), (128, 128, 128))
    grid = np.array([[1.0, 0.0], [0.0, 0.0]])
    out = scene_overlay(img, grid, (0, 0, 64, 64), [("x", (40, 40, 60, 60), "#000000")], alpha=1.0, min_side=256)
    assert out.size == (256, 256)
    assert out.getpixel((100, 60)) == (178, 24, 43)  # the red top-left patch: 128 px once enlarged 4x
    assert out.getpixel((200, 60)) == (255, 255, 255)  # a zero patch is white at full opacity
    assert out.getpixel((160, 200)) == (0, 0, 0)  # the outline at x = 40 * 4
