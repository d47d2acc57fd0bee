"""Contrastive IG through each tiny VLM: completeness, the text/image split of the scores, ablation of the top image
patches, and proof that the image matters (another photo changes f and the heatmap)."""

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from grains.attribution import (
    ContrastiveObjective,
    attribute,
    attribute_example,
    baseline_embeddings,
    input_embeddings,
)
from grains.encoding import encode_example
from grains.models import load_model

IMAGES = str(Path(__file__).resolve().parents[2] / "assets" / "images")
QUESTION, CHOSEN, REJECTED = "Is there a spoon in the image?", " Yes", " No"
FAMILIES = ["tiny-random-llava", "tiny-random-llava-next", "tiny-random-qwen2-vl", "tiny-random-idefics3",
            "tiny-random-gemma3"]
# Gauss-Legendre points at which IG has converged on each tiny model (measured relative deltas: LLaVA 1e-6,
# LLaVA-NeXT 2e-4, Qwen2-VL 2e-5, Idefics3 4e-4 at 256; the Gemma-3 RMSNorm path is steep near the zero baseline:
# 0.15 at 256, 0.02 at 512).
STEPS = {"tiny-random-gemma3": 512}
DEFAULT_STEPS = 256


def _image(name: str) -> Image.Image:
    return Image.open(f"{IMAGES}/{name}").convert("RGB")


@pytest.fixture(scope="module", params=FAMILIES)
def case(request):
    lm = load_model(request.param)
    example = encode_example(lm, QUESTION, CHOSEN, REJECTED, image=_image("coffee.jpg"))
    result = attribute_example(lm, example, steps=STEPS.get(request.param, DEFAULT_STEPS))
    result.image_grid, image_extra = lm.adapter.image_summary(result, example)
    result.extra.update(image_extra)
    return lm, example, result


def test_completeness(case):
    _, _, result = case
    assert abs(result.f_input - result.f_baseline) > 0.3  # the contrast is not trivially zero
    assert result.relative_delta < 0.05


def test_text_and_image_scores_add_up(case):
    _, example, result = case
    extra = result.extra
    total = result.f_input - result.f_baseline
    assert abs(extra["image_score"] + extra["text_score"] - total) <= abs(result.delta) + 1e-4
    image_positions = [i for i, m in enumerate(example.prompt.image_mask) if m]
    assert extra["image_token_count"] == len(image_positions)
    assert extra["image_score"] == pytest.approx(sum(result.scores[i] for i in image_positions), abs=1e-9)
    grid = torch.tensor(result.image_grid, dtype=torch.float64)
    assert list(grid.shape) == extra["grid_shape"]
    # the heatmap holds every on-grid image token once; newline / global-view tokens are the off-grid rest
    assert float(grid.sum()) + extra["off_grid_score"] == pytest.approx(extra["image_score"], abs=1e-9)
    assert 0.0 < extra["image_share"] <= 1.0
    assert all(math.isfinite(v) for v in grid.flatten().tolist())


def _ablated_f(lm, example, positions):
    objective = ContrastiveObjective(lm, example)
    x = input_embeddings(lm, example)
    base = baseline_embeddings(lm, example, x)
    plus, minus = x[0].clone(), x[1].clone()
    plus[0, positions] = base[0][0, positions]
    minus[0, positions] = base[1][0, positions]
    with torch.no_grad():
        return float(objective(plus, minus))


def _quarters(example, result):
    positions = [i for i, m in enumerate(example.prompt.image_mask) if m]
    ranked = sorted(positions, key=lambda i: -result.scores[i])
    quarter = max(1, len(positions) // 4)
    return ranked[:quarter], ranked[-quarter:]


def test_ablating_the_top_image_patches_changes_f(case):
    lm, example, result = case
    top, _ = _quarters(example, result)
    # measured |change| on coffee.jpg: 0.09 (LLaVA-NeXT) to 0.39 (Gemma-3)
    assert abs(result.f_input - _ablated_f(lm, example, top)) > 0.02


def test_ablating_positive_patches_lowers_f_more_than_negative_ones():
    """Over 5 families x 3 photos: removing the quarter of image tokens with the highest scores leaves f below
    removing the quarter with the lowest. Random tiny models interact strongly (single-token ablations track IG
    poorly), so this is checked in aggregate: measured 15 of 15 at 16 IG points (14 of 15 at 32 and at 256, where
    LLaVA-NeXT on coffee.jpg is the exception); by chance alone 12 or more of 15 happens 1.8% of the time."""
    coffee = _image("coffee.jpg")
    photos = [coffee, coffee.crop((0, 0, 200, 400)), _image("rocket.jpg")]
    ordered = 0
    for name in FAMILIES:
        lm = load_model(name)
        for photo in photos:
            example = encode_example(lm, QUESTION, CHOSEN, REJECTED, image=photo)
            result = attribute_example(lm, example, steps=16)
            top, bottom = _quarters(example, result)
            ordered += _ablated_f(lm, example, top) < _ablated_f(lm, example, bottom)
    assert ordered >= 12


def test_the_image_matters(case):
    lm, _, result = case
    other = encode_example(lm, QUESTION, CHOSEN, REJECTED, image=_image("rocket.jpg"))
    with torch.no_grad():
        f_other = float(ContrastiveObjective(lm, other)(*input_embeddings(lm, other)))
    assert abs(f_other - result.f_input) > 0.05
    rerun = attribute_example(lm, other, steps=16)
    rerun.image_grid, _ = lm.adapter.image_summary(rerun, other)
    mine = torch.tensor(result.image_grid)
    theirs = torch.tensor(rerun.image_grid)
    if mine.shape == theirs.shape:
        assert (mine - theirs).abs().max() > 1e-3
    # the baseline zeroes every image token, so f(baseline) does not depend on the photo
    assert rerun.f_baseline == pytest.approx(result.f_baseline, abs=1e-5)


def test_cli_equivalent_call_on_llava():
    lm = load_model("tiny-random-llava")
    result = attribute(lm, QUESTION, CHOSEN, REJECTED, image=_image("coffee.jpg"))
    assert all(math.isfinite(s) for s in result.scores)
    image_scores = [s for s, m in zip(result.scores, result.image_mask) if m]
    text_scores = [s for s, m in zip(result.scores, result.image_mask) if not m]
    assert len(image_scores) == 36 and text_scores
    assert any(abs(s) > 0 for s in image_scores) and any(abs(s) > 0 for s in text_scores)
    assert len(result.image_grid) == 6 and all(len(row) == 6 for row in result.image_grid)
    assert result.extra["crop_box"] == pytest.approx([100, 0, 500, 400])
