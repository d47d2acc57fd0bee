"""Patch heatmaps scored against known boxes: synthetic grids with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from grains.errors import InputError
from grains.vlm.grounding import cell_overlap, mass_inside, pointing_hit, score_box, score_boxes


def test_overlap_counts_partial_cells_by_area():
    # 4x4 grid over a 64 px image (16 px cells); the box covers x 8..40, y 0..16: half of cell 0, cell 1, half of 2
    overlap = cell_overlap((4, 4), (0, 0, 64, 64), (8, 0, 40, 16))
    assert overlap[0].tolist() == [0.5, 1.0, 0.5, 0.0]
    assert overlap[1:].sum() == 0
    assert overlap.mean() == pytest.approx(32 * 16 / 64**2)


def test_overlap_on_a_padded_grid_box():
    # a grid covering (-16, 0, 80, 64) (padded past the image): 3 columns of 32 px; the box on the middle column
    overlap = cell_overlap((1, 3), (-16, 0, 80, 64), (16, 0, 48, 64))
    assert overlap.tolist() == [[0.0, 1.0, 0.0]]


def test_mass_inside_counts_only_positive_mass_and_the_negative_side_apart():
    grid = np.array([[4.0, -3.0], [1.0, -1.0]])
    inside = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert mass_inside(grid, inside) == pytest.approx(0.8)  # 4 of the 5 positive
    assert mass_inside(grid, inside, sign=-1) == pytest.approx(0.75)  # 3 of the 4 negative
    assert mass_inside(np.zeros((2, 2)), inside) is None


def test_a_uniform_heatmap_scores_the_area_share():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x0, y0 = rng.uniform(0, 40, 2)
        box = (x0, y0, x0 + rng.uniform(5, 24), y0 + rng.uniform(5, 24))
        s = score_box(np.ones((6, 6)), (0, 0, 64, 64), box)
        assert s.mass_inside == pytest.approx(s.area_share)
        assert s.area_share == pytest.approx((box[2] - box[0]) * (box[3] - box[1]) / 64**2)


def test_a_heatmap_on_the_object_beats_chance_and_one_elsewhere_scores_zero():
    grid = np.zeros((4, 4))
    grid[1, 2] = 5.0  # cell x 32..48, y 16..32
    grid[3, 0] = -2.0
    on = score_box(grid, (0, 0, 64, 64), (30, 14, 50, 34))
    assert on.mass_inside == 1.0 and on.pointing_hit is True
    assert on.area_share == pytest.approx(20 * 20 / 64**2)
    assert on.pointing_chance == pytest.approx(9 / 16)  # x 30..50 and y 14..34 each touch 3 cells
    off = score_box(grid, (0, 0, 64, 64), (0, 48, 16, 64))
    assert off.mass_inside == 0.0 and off.pointing_hit is False and off.negative_mass_inside == 1.0


def test_pointing_takes_the_top_patch_and_none_without_positive_scores():
    overlap = cell_overlap((2, 2), (0, 0, 2, 2), (1, 1, 2, 2))
    assert pointing_hit([[1.0, 2.0], [0.5, 1.9]], overlap) is False
    assert pointing_hit([[1.0, 2.0], [0.5, 2.1]], overlap) is True
    assert pointing_hit([[-1.0, 0.0], [0.0, -3.0]], overlap) is None


def test_several_boxes_and_bad_input():
    scores = score_boxes([[1.0, 3.0]], (0, 0, 8, 4), {"a": (0, 0, 4, 4), "b": (4, 0, 8, 4)})
    assert scores["a"].mass_inside == pytest.approx(0.25) and scores["b"].mass_inside == pytest.approx(0.75)
    with pytest.raises(InputError):
        score_box([[1.0]], (0, 0, 8, 8), (4, 4, 2, 2))
    with pytest.raises(InputError):
        score_box([1.0, 2.0], (0, 0, 8, 8), (0, 0, 2, 2))


def test_token_places_maps_image_tokens_to_cells_and_boxes():
    from grains.vlm.grounding import token_places

    # tokens: text, 4 image tokens (a 2x2 grid over 8x8 px, the first one off the grid), text
    view = {"shape": [2, 2], "cells": [-1, 1, 2, 3], "box": [0, 0, 8, 8]}
    mask = [False, True, True, True, True, False]
    boxes = {"cube": (4, 0, 8, 4), "ball": (0, 4, 2, 8)}
    places = token_places([0, 1, 2, 3, 4, 5], mask, view, boxes)
    assert [p["kind"] for p in places] == ["text", "off-grid", "patch", "patch", "patch", "text"]
    assert places[2]["cell"] == [0, 1] and places[2]["on"] == "cube" and places[2]["share"] == 1.0
    assert places[3]["cell"] == [1, 0] and places[3]["on"] == "ball" and places[3]["share"] == 0.5
    assert places[4]["on"] == "background" and places[4]["share"] == 0.0
