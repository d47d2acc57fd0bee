"""Plotly figures: per-token attribution bars, layer x strength sweep heatmaps and effect against side effect
(small, data-light)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from grains.errors import InputError
from grains.viz.heatmap import NEG_BORDER, POS_BORDER, visible_token
from grains.viz.overlay import DIVERGING_STOPS, rgb_hex

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


CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "fdr_bh": "Benjamini-Hochberg"}


def significance_caption(cells_tested: int | None, correction: str | None) -> str:
    """'* = significant at 0.05, Holm-corrected over N cells tested' (what the marks mean)."""
    name = CORRECTION_NAMES.get(str(correction).lower(), str(correction)) if correction else None
    if name and cells_tested is not None:
        return f"* = significant at 0.05, {name}-corrected over {cells_tested} cells tested"
    if cells_tested is not None:
        return f"* = significant at 0.05, uncorrected, {cells_tested} cells tested"
    return "* = significant at 0.05"


def sweep_heatmap(layers: Sequence[int], strengths: Sequence[float], values: Sequence[Sequence[float]],
                  significant: Sequence[Sequence[bool]] | None = None, title: str | None = None,
                  value_label: str = "value", cells_tested: int | None = None, correction: str | None = None,
                  best: dict | None = None) -> go.Figure:
    """Layer x strength grid of a metric (rows = layers, columns = strengths) in diverging colours centred on
    the unsteered value (the mean of the strength-0 column when the grid has one, else 0).

    Cells flagged in `significant` (the sweep's corrected flags) carry a '*'; with `cells_tested` and `correction`
    the title says so ("Holm-corrected over N cells tested"). `best` ({"layer", "strength", "label"}, e.g. the
    sweep's "best_of_n") outlines that cell and names it with its label ("best of N")."""
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
    flat = bool(finite.size) and bool(np.all(finite == centre))  # no cell moved from the unsteered value
    if flat:  # one colour everywhere would read as an empty chart: print every cell's value and say so
        marks = [[f"{'' if not math.isfinite(v) else f'{v:+.3g}'}{(marks[r][c] if marks else '')}"
                  for c, v in enumerate(row)] for r, row in enumerate(z)]
    if marks is not None:
        trace.update(text=marks, texttemplate="%{text}", textfont={"size": 16 if not flat else 12, "color": "#111"})
    fig = go.Figure(trace)
    if flat:
        what = "no cell moved"
        fig.add_annotation(xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, opacity=0.95,
                           text=_plotly_text(f"{what}: {value_label} {float(finite[0]):+.3g} in all "
                                             f"{finite.size} cells"),
                           font={"size": 13, "color": "#92400e"}, bgcolor="#fef3c7")
    parts = [_plotly_text(title)] if title else []
    if significant is not None and (cells_tested is not None or correction):
        caption = _plotly_text(significance_caption(cells_tested, correction))
        parts.append(f"<sup>{caption}</sup>" if title else caption)
    title_text = "<br>".join(parts) or None
    if best and best.get("layer") is not None and best.get("strength") is not None:
        try:
            i = [int(la) for la in layers].index(int(best["layer"]))
            j = [float(s) for s in strengths].index(float(best["strength"]))
        except ValueError:
            i = j = -1
        if i >= 0:
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, xref="x", yref="y",
                          line={"color": "#111", "width": 2.5}, fillcolor="rgba(0,0,0,0)")
            fig.add_annotation(x=x[j], y=y[i], text=_plotly_text(str(best.get("label") or "best")), showarrow=False,
                               yshift=-12, font={"size": 10, "color": "#111"})
    fig.update_layout(
        title=title_text, template="plotly_white", height=max(320, 34 * len(layers) + 170),
        margin={"l": 60, "r": 20, "t": 70 if title_text else 20, "b": 50},
        xaxis={"title": "strength (relative to the layer's median token norm)", "type": "category"},
        yaxis={"title": "layer", "type": "category"},
    )
    return fig


def effect_side_effect_plot(layers: Sequence[int], strengths: Sequence[float], effects: Sequence[Sequence[float]],
                            kls: Sequence[Sequence[float]], budget: float | None = None,
                            chosen_layer: int | None = None, effect_label: str = "accuracy gain (points)",
                            title: str | None = None) -> go.Figure:
    """Effect against side effect, one point per strength: x = mean KL on neutral prompts (nats), y = the effect
    (e.g. accuracy gain). One line per layer; only `chosen_layer` (default: the first) is shown at first, the others
    can be switched on in the legend. The KL budget is a dashed vertical line. Points are labelled by strength."""
    if not layers or not strengths:
        raise InputError("The plot needs at least one layer and one strength.")
    eff = _grid(effects, len(layers), len(strengths), "effects")
    kl = _grid(kls, len(layers), len(strengths), "KL values")
    if np.any(kl[np.isfinite(kl)] < 0):
        raise InputError("A KL divergence cannot be negative.")
    chosen = int(chosen_layer) if chosen_layer is not None and int(chosen_layer) in [int(la) for la in layers] \
        else int(layers[0])
    order = sorted(range(len(strengths)), key=lambda j: float(strengths[j]))
    fig = go.Figure()
    for i, layer in enumerate(layers):
        xs = [None if not math.isfinite(kl[i, j]) else float(kl[i, j]) for j in order]
        ys = [None if not math.isfinite(eff[i, j]) else float(eff[i, j]) for j in order]
        labels = [f"{float(strengths[j]):g}" for j in order]
        main = int(layer) == chosen
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers+text" if main else "lines+markers", text=labels if main else None,
            textposition="top center", name=f"layer {int(layer)}", visible=True if main else "legendonly",
            customdata=[[lab] for lab in labels], line={"width": 2.5 if main else 1.5},
            hovertemplate=(f"layer {int(layer)} · strength %{{customdata[0]}}<br>mean KL %{{x:.4g}} nats<br>"
                           f"{_plotly_text(effect_label)} %{{y:.4g}}<extra></extra>"),
        ))
    if budget is not None and math.isfinite(float(budget)):
        fig.add_vline(x=float(budget), line={"color": "#b2182b", "dash": "dash", "width": 2},
                      annotation_text=f"KL budget {float(budget):g} nats", annotation_position="top right")
    fig.add_hline(y=0.0, line={"color": "#888", "width": 1})
    fig.update_layout(
        title=_plotly_text(title) if title else None, template="plotly_white", height=360,
        margin={"l": 60, "r": 20, "t": 50 if title else 20, "b": 50}, legend={"title": {"text": "layer"}},
        xaxis={"title": "side effect: mean KL on neutral prompts (nats)", "rangemode": "tozero"},
        yaxis={"title": _plotly_text(effect_label), "zeroline": True},
    )
    return fig
