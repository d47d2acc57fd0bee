"""Plotly figures: bar colours follow sign, labels stay distinct, sweep marks and centring are right."""

from __future__ import annotations

import pytest

from components.charts import (
    NEG_COLOUR,
    POS_COLOUR,
    ZERO_COLOUR,
    attribution_bar_chart,
    diverging_colorscale,
    effect_side_effect_plot,
    significance_caption,
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


def test_sweep_heatmap_says_how_the_marks_were_corrected_and_outlines_the_best_of_n() -> None:
    layers, strengths = [3, 6], [0.0, 0.5, 1.0]
    values = [[0.0, 2.0, 9.0], [0.0, -1.0, 4.0]]
    significant = [[False, False, True], [False, False, False]]
    best = {"label": "best of 4", "layer": 3, "strength": 1.0, "gain": 0.09}
    fig = sweep_heatmap(layers, strengths, values, significant, title="Accuracy gain", cells_tested=4,
                        correction="holm", best=best)
    title = fig.layout.title.text
    assert "Accuracy gain" in title and "Holm-corrected over 4 cells tested" in title
    stars = [(i, j) for i, row in enumerate(fig.data[0].text) for j, t in enumerate(row) if t == "*"]
    assert stars == [(0, 2)]  # only the corrected flag, never a cell whose raw interval excluded 0
    (shape,) = fig.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (1.5, 2.5, -0.5, 0.5)  # layer 3 (row 0), strength 1 (col 2)
    labels = [a.text for a in fig.layout.annotations]
    assert labels == ["best of 4"]
    assert significance_caption(7, "bh") == "* = significant at 0.05, Benjamini-Hochberg-corrected over 7 cells tested"
    assert "uncorrected" in significance_caption(7, None)


def test_sweep_heatmap_best_cell_outside_the_grid_is_not_drawn() -> None:
    fig = sweep_heatmap([1], [0.5], [[1.0]], best={"label": "best of 1", "layer": 9, "strength": 0.5})
    assert not fig.layout.shapes and not fig.layout.annotations and fig.layout.title.text is None


def test_effect_against_side_effect_one_line_per_layer_with_the_budget() -> None:
    layers, strengths = [2, 5], [0.5, 0.0, -0.5, 1.0]  # unsorted on purpose
    gains = [[5.0, 0.0, -3.0, 8.0], [1.0, 0.0, -1.0, 2.0]]
    kls = [[0.2, 0.0, 0.25, 0.9], [0.05, 0.0, 0.04, 0.1]]
    fig = effect_side_effect_plot(layers, strengths, gains, kls, budget=0.5, chosen_layer=5)
    first, second = fig.data
    assert first.name == "layer 2" and first.visible == "legendonly" and second.visible is True
    assert list(second.x) == [0.04, 0.0, 0.05, 0.1] and list(second.y) == [-1.0, 0.0, 1.0, 2.0]  # by strength
    assert list(second.text) == ["-0.5", "0", "0.5", "1"]
    budget = [s for s in fig.layout.shapes if s.x0 == s.x1]
    assert len(budget) == 1 and budget[0].x0 == 0.5 and "0.5 nats" in fig.layout.annotations[0].text
    assert "KL" in fig.layout.xaxis.title.text


def test_effect_against_side_effect_validates() -> None:
    with pytest.raises(InputError):
        effect_side_effect_plot([1], [0.5, 1.0], [[1.0, 2.0]], [[0.1]])
    with pytest.raises(InputError):
        effect_side_effect_plot([1], [0.5], [[1.0]], [[-0.1]])
    fig = effect_side_effect_plot([1, 2], [0.5], [[1.0], [2.0]], [[0.1], [0.2]], chosen_layer=7)
    assert fig.data[0].visible is True and fig.data[1].visible == "legendonly"  # unknown layer: the first
