"""Pixel IG on the tiny VLMs: completeness, nothing lost between pixels and patches, and the patch grid lines up
with the picture (a black region, equal to the baseline, gets exactly zero in its cells)."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from grains.errors import InputError
from grains.models import load_model
from grains.vlm.pixels import attribute_pixels

QUESTION, CHOSEN, REJECTED = "Is there a spoon in the image?", " Yes", " No"
FAMILIES = ["tiny-random-llava", "tiny-random-llava-next", "tiny-random-qwen2-vl", "tiny-random-idefics3",
            "tiny-random-gemma3"]


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request):
    return load_model(request.param)


def test_pixel_ig_is_complete_and_keeps_every_pixel(lm):
    image = Image.open(Path(__file__).resolve().parents[2] / "assets" / "images" / "coffee.jpg").convert("RGB")
    result = attribute_pixels(lm, QUESTION, CHOSEN, REJECTED, image=image, steps=16)
    # from a black image the path is smooth: measured relative deltas 1e-4 to 5e-3 at 16 points
    assert abs(result.f_input - result.f_baseline) > 0.1
    assert result.relative_delta < 0.02
    # per-patch sums add up to the pixel total (LLaVA-NeXT's letterbox is black, i.e. the baseline, so it adds 0)
    assert result.extra["token_total"] == pytest.approx(result.extra["pixel_total"], abs=1e-4)
    token = lm.encode_prompt(QUESTION, image=image).extras["image_layout"]["views"][0]["shape"]
    assert [len(result.image_grid), len(result.image_grid[0])] == token


def test_black_region_gets_zero_and_the_patch_grid_lines_up(lm):
    """64x64 picture, black except a bright top-right quadrant: every cell of the bottom-left quadrant (one cell of
    margin for resize blur) sees only baseline pixels, so its score is exactly zero; the bright cells are not. A
    flipped, transposed or tile-swapped layout would light up the dark corner."""
    pixels = torch.zeros(64, 64, 3, dtype=torch.uint8)
    pixels[:32, 32:] = torch.tensor([250, 200, 60], dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy())
    result = attribute_pixels(lm, QUESTION, CHOSEN, REJECTED, image=image, steps=4)
    grid = torch.tensor(result.image_grid)
    rows, cols = grid.shape
    dark = grid[rows // 2 + 1:, : cols // 2 - 1]
    bright = grid[: rows // 2 - 1, cols // 2 + 1:]
    assert dark.numel() and bright.numel()
    assert dark.abs().max() < 1e-6
    assert bright.abs().max() > 1e-4


def test_pixel_attribution_needs_an_image():
    with pytest.raises(InputError):
        attribute_pixels(load_model("tiny-random-llava"), QUESTION, CHOSEN, REJECTED, image=None)
