"""Plotly figures: per-token attribution bars and layer x strength sweep heatmaps (small, data-light)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from components.token_heatmap import NEG_BORDER, POS_BORDER, visible_token
from grains.errors import InputError
from grains.overlay import DIVERGING_STOPS, rgb_hex

POS_COLOUR = rgb_hex(DIVERGING_STOPS[-1][1])  # red: toward the chosen answer
NEG_COLOUR = rgb_hex(DIVERGING_STOPS[0][1])  # blue: toward the rejected answer
ZERO_COLOUR = "#bbbbbb"


def diverging_colorscale() -> list[list[float | str]]:
    """The shared blue-white-red map as a plotly colorscale (0 -> blue, 0.5 -> white, 1 -> red)."""
    return [[(p + 1) / 2, rgb_hex(rgb)] for p, rgb in DIVERGING_STOPS]


def _plotly_text(text: str) -> str:
    """Plotly reads a subset of HTML in labels; escape user text so it shows literally."""
    return html.escape(text, quote=False)


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Axis labels 'i: token' so repeated tokens stay distinct categories."""
    return [f"{i}: {_plotly_text(visible_token(str(t)))}" for i, t in enumerate(tokens)]


def attribution_bar_chart(tokens: Sequence[str], scores: Sequence[float], selected: Iterable[int] = (),
                          title: str | None = None) -> go.Figure:
    """One bar per token: red for positive scores, blue for negative, grey for zero; selected tokens outlined
    (dark red or dark blue by sign). Hover shows index, token and score."""
    values = [float(s) for s in scores]
    if len(values) != len(tokens):
        raise InputError(f"There are {len(tokens)} tokens but {len(values)} scores; they must match one to one.")
    chosen = {int(i) for i in selected}
    bad = [i for i in chosen if not 0 <= i < len(values)]
    if bad:
        raise InputError(f"The selected token index {min(bad)} is out of range for {len(values)} tokens.")
    colours = [POS_COLOUR if v > 0 else NEG_COLOUR if v < 0 else ZERO_COLOUR for v in values]
    line_colours = [(POS_BORDER if values[i] >= 0 else NEG_BORDER) if i in chosen else "rgba(0,0,0,0)"
                    for i in range(len(values))]
    line_widths = [2.5 if i in chosen else 0 for i in range(len(values))]
    labels = token_labels(tokens)
    fig = go.Figure(go.Bar(
        x=labels, y=[v if math.isfinite(v) else None for v in values],
        marker={"color": colours, "line": {"color": line_colours, "width": line_widths}},
        customdata=[[i, _plotly_text(repr(str(t))), "yes" if i in chosen else "no"] for i, t in enumerate(tokens)],
        hovertemplate="index %{customdata[0]} · %{customdata[1]}<br>score %{y:.4g}"
                      "<br>selected: %{customdata[2]}<extra></extra>",
    ))
    fig.update_layout(
        title=_plotly_text(title) if title else None, template="plotly_white", bargap=0.15,
        margin={"l": 50, "r": 20, "t": 50 if title else 20, "b": 90}, height=360, showlegend=False,
        xaxis={"title": "token", "type": "category", "tickangle": -45},
        yaxis={"title": "attribution (chosen − rejected)", "zeroline": True, "zerolinecolor": "#888"},
    )
    return fig


def _grid(values: Sequence[Sequence[float]], rows: int, cols: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The {what} must be a rectangular grid of numbers ({rows}x{cols}).") from exc
    if arr.shape != (rows, cols):
        raise InputError(f"The {what} must have one row per layer and one column per strength "
                         f"({rows}x{cols}), not {arr.shape[0]}x{arr.shape[1] if arr.ndim == 2 else 0}.")
    return arr


def sweep_heatmap(layers: Sequence[int], strengths: Sequence[float], values: Sequence[Sequence[float]],
                  significant: Sequence[Sequence[bool]] | None = None, title: str | None = None,
                  value_label: str = "value") -> go.Figure:
    """Layer x strength grid of a metric (rows = layers, columns = strengths) in diverging colours centred on
    the unsteered value (the mean of the strength-0 column when the grid has one, else 0). Cells whose
    confidence interval excludes 0 (`significant`) carry a '*'."""
    if not layers or not strengths:
        raise InputError("The sweep needs at least one layer and one strength.")
    z = _grid(values, len(layers), len(strengths), "sweep values")
    zero_cols = [j for j, s in enumerate(strengths) if float(s) == 0.0]
    centre = 0.0
    if zero_cols:
        base = z[:, zero_cols]
        if np.isfinite(base).any():
            centre = float(np.nanmean(base))
    marks = None
    if significant is not None:
        sig = _grid(significant, len(layers), len(strengths), "significance marks")
        marks = [["*" if bool(v) and not math.isnan(v) else "" for v in row] for row in sig]
    x = [f"{float(s):g}" for s in strengths]
    y = [str(int(layer)) for layer in layers]
    finite = z[np.isfinite(z)]
    half = float(np.max(np.abs(finite - centre))) if finite.size else 1.0
    half = half if half > 0 else 1.0
    trace = go.Heatmap(
        z=[[None if not math.isfinite(v) else float(v) for v in row] for row in z], x=x, y=y,
        colorscale=diverging_colorscale(), zmid=centre, zmin=centre - half, zmax=centre + half,
        colorbar={"title": {"text": _plotly_text(value_label)}},
        hovertemplate=f"layer %{{y}} · strength %{{x}}<br>{_plotly_text(value_label)} %{{z:.4g}}<extra></extra>",
        xgap=1, ygap=1,
    )
    if marks is not None:
        trace.update(text=marks, texttemplate="%{text}", textfont={"size": 16, "color": "#111"})
    fig = go.Figure(trace)
    fig.update_layout(
        title=_plotly_text(title) if title else None, template="plotly_white", height=max(260, 28 * len(layers) + 120),
        margin={"l": 60, "r": 20, "t": 50 if title else 20, "b": 50},
        xaxis={"title": "strength (relative to the layer's median token norm)", "type": "category"},
        yaxis={"title": "layer", "type": "category"},
    )
    return fig
