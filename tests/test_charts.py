"""Plotly figures: bar colours follow sign, labels stay distinct, sweep marks and centring are right."""

from __future__ import annotations

import pytest

from components.charts import (
    NEG_COLOUR,
    POS_COLOUR,
    ZERO_COLOUR,
    attribution_bar_chart,
    diverging_colorscale,
    sweep_heatmap,
)
from grains.errors import InputError


def test_bar_chart_one_bar_per_token_coloured_by_sign() -> None:
    tokens = ["The", " cat", " cat", "<b>bold</b>", "?"]
    scores = [0.5, -2.0, 1.0, 0.0, -0.1]
    fig = attribution_bar_chart(tokens, scores, selected=[1, 2])
    bar = fig.data[0]
    assert len(fig.data) == 1
    assert list(bar.y) == scores
    assert len(bar.x) == len(tokens) and len(set(bar.x)) == len(tokens)  # duplicate " cat" stays distinct
    assert list(bar.marker.color) == [POS_COLOUR, NEG_COLOUR, POS_COLOUR, ZERO_COLOUR, NEG_COLOUR]
    widths = list(bar.marker.line.width)
    assert widths[1] > 0 and widths[2] > 0 and widths[0] == widths[3] == widths[4] == 0
    assert bar.x[1] == "1: ·cat"
    assert "<b>" not in bar.x[3] and "&lt;b&gt;" in bar.x[3]  # plotly would render raw tags
    assert "%{y" in bar.hovertemplate


def test_bar_chart_validates() -> None:
    with pytest.raises(InputError):
        attribution_bar_chart(["a"], [1.0, 2.0])
    with pytest.raises(InputError):
        attribution_bar_chart(["a"], [1.0], selected=[3])


def test_sweep_heatmap_marks_significant_cells_and_centres_on_strength_zero() -> None:
    layers = [4, 8, 12]
    strengths = [-0.2, 0.0, 0.2, 0.4]
    values = [[0.40, 0.50, 0.55, 0.60],
              [0.30, 0.50, 0.70, 0.80],
              [0.45, 0.50, 0.52, None]]
    significant = [[False, False, False, True],
                   [True, False, True, True],
                   [False, False, False, False]]
    fig = sweep_heatmap(layers, strengths, values, significant, title="accuracy")
    hm = fig.data[0]
    assert [list(r) for r in hm.z] == [[0.40, 0.50, 0.55, 0.60], [0.30, 0.50, 0.70, 0.80], [0.45, 0.50, 0.52, None]]
    assert list(hm.x) == ["-0.2", "0", "0.2", "0.4"] and list(hm.y) == ["4", "8", "12"]
    stars = [(i, j) for i, row in enumerate(hm.text) for j, t in enumerate(row) if t == "*"]
    assert stars == [(0, 3), (1, 0), (1, 2), (1, 3)]
    assert hm.zmid == pytest.approx(0.5)
    assert hm.zmin == pytest.approx(0.5 - 0.3) and hm.zmax == pytest.approx(0.5 + 0.3)  # symmetric around centre
    assert hm.colorscale[0][1].lower() == "#2166ac" and hm.colorscale[-1][1].lower() == "#b2182b"


def test_sweep_without_zero_strength_centres_on_zero_and_needs_no_marks() -> None:
    fig = sweep_heatmap([1, 2], [0.1, 0.3], [[-1.0, 2.0], [0.5, 0.0]])
    hm = fig.data[0]
    assert hm.zmid == 0.0 and hm.text is None


def test_sweep_shape_errors() -> None:
    with pytest.raises(InputError):
        sweep_heatmap([1, 2], [0.1], [[1.0]])
    with pytest.raises(InputError):
        sweep_heatmap([1], [0.1, 0.2], [[1.0, 2.0]], significant=[[True]])
    with pytest.raises(InputError):
        sweep_heatmap([], [0.1], [])


def test_colorscale_runs_blue_white_red() -> None:
    scale = diverging_colorscale()
    assert scale[0][0] == 0.0 and scale[-1][0] == 1.0
    assert [p for p, _ in scale if _ == "#ffffff"] == [0.5]


def test_sweep_ragged_grid_is_an_input_error() -> None:
    with pytest.raises(InputError):
        sweep_heatmap([1, 2], [0.1, 0.2], [[1.0, 2.0], [3.0]])
