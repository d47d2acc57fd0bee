"""HTML and plain-text views of results (attribution, build, evaluation, sweep), for notebooks and terminals.

Self-contained HTML with inline styles and every user string escaped; no Gradio (the app has its own richer cards)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from grains.viz.formatting import percent
from grains.viz.heatmap import render_token_heatmap
from grains.viz.overlay import diverging_rgb, rgb_hex, symmetric_vmax

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.build import BuildResult
    from grains.reports import EvaluationReport, SweepResult

BOX = '<div class="grains-result" style="font-family:system-ui,sans-serif;font-size:14px;line-height:1.45">'
TABLE = '<table style="border-collapse:collapse;margin:6px 0">'
CELL = "padding:3px 9px;border:1px solid #ddd;text-align:right"
HEAD = "padding:3px 9px;border:1px solid #ddd;background:#f6f6f6;text-align:left"
ITEMS_SHOWN = 20


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return percent(value, 1, "—")


def _interval(ci: Any, pct: bool = True) -> str:
    if not ci or len(ci) != 2 or ci[0] is None:
        return "—"
    fmt = (lambda v: f"{100 * v:+.1f}") if pct else (lambda v: f"{v:+.3g}")
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" + (" points" if pct else "")


def _badge(ok: bool, yes: str, no: str) -> str:
    colour = "#1a7f37" if ok else "#b35900"
    return (f'<span style="display:inline-block;padding:1px 8px;border-radius:9px;color:white;'
            f'background:{colour};font-size:12px">{html.escape(yes if ok else no)}</span>')


def _row(cells: list[str], head: bool = False) -> str:
    style = HEAD if head else CELL
    tag = "th" if head else "td"
    return "<tr>" + "".join(f'<{tag} style="{style}">{c}</{tag}>' for c in cells) + "</tr>"


def _convergence_badge(result: AttributionResult) -> str:
    if result.convergence == "gap too small to judge":
        return f'<span style="color:#555">{html.escape(result.convergence_reading)}</span>'
    return _badge(result.converged, "converged", "not converged: raise the steps or set a tolerance")


def attribution_html(result: AttributionResult) -> str:
    """The prompt heatmap and the two full sequences, with f(x) - f(x'), the delta and whether it converged."""
    gap = result.f_input - result.f_baseline
    head = (f"<div><b>f(x) − f(x′)</b> = {gap:+.3f} nats · <b>delta</b> {result.delta:+.3g} "
            f"({100 * result.relative_delta:.1f}% of the gap, {100 * result.abs_relative_delta:.1f}% of Σ|φ|) · "
            f"{result.points_used or result.steps} points · {result.seconds:.1f} s "
            f"{_convergence_badge(result)}</div>")
    parts = [BOX, head,
             render_token_heatmap(result.tokens, result.scores, title="Prompt (s+ score + s− score)"),
             render_token_heatmap(result.plus_tokens, result.plus_scores, title="Prompt + chosen (s+)", caption=None),
             render_token_heatmap(result.minus_tokens, result.minus_scores, title="Prompt + rejected (s−)",
                                  caption=None)]
    if result.image_grid:
        parts.append(_grid_html(result.image_grid))
    parts.append("</div>")
    return "".join(parts)


def _grid_html(grid: list[list[float]]) -> str:
    """The image-patch scores as a small coloured grid (the photo overlay needs the image: see grains.viz.overlay)."""
    flat = [v for row in grid for v in row]
    colours = diverging_rgb(np.asarray(grid, dtype=float), symmetric_vmax(flat))
    rows = []
    for r, row in enumerate(grid):
        cells = "".join(f'<td title="{v:+.3g}" style="width:14px;height:14px;background:{rgb_hex(colours[r][c])}">'
                        "</td>" for c, v in enumerate(row))
        rows.append(f"<tr>{cells}</tr>")
    return ('<div style="margin-top:6px"><b>Image patches</b><table style="border-collapse:collapse">'
            f'{"".join(rows)}</table></div>')


def attribution_text(result: AttributionResult, top: int = 8) -> str:
    """The strongest prompt tokens each way, and the convergence line."""
    gap = result.f_input - result.f_baseline
    ranked = sorted(range(len(result.tokens)), key=lambda i: result.scores[i])
    pos = [f"{result.tokens[i]!r} {result.scores[i]:+.3f}" for i in reversed(ranked[-top:]) if result.scores[i] > 0]
    neg = [f"{result.tokens[i]!r} {result.scores[i]:+.3f}" for i in ranked[:top] if result.scores[i] < 0]
    state = (result.convergence_reading if result.convergence != "not converged" else
             f"NOT converged (raise the steps or set a tolerance): {result.convergence_reading}")
    return "\n".join([
        f"Contrastive IG, target {result.target}, baseline {result.baseline}: f(x) - f(x') = {gap:+.3f} nats",
        f"delta {result.delta:+.3g} ({100 * result.relative_delta:.1f}% of the gap, "
        f"{100 * result.abs_relative_delta:.1f}% of sum |phi|), {result.points_used or result.steps} points, "
        f"{result.seconds:.1f} s: {state}",
        "toward the chosen answer:   " + (", ".join(pos) or "none"),
        "toward the rejected answer: " + (", ".join(neg) or "none"),
    ])


def _selection_estimate(sel: dict[str, Any]) -> str:
    """The claim's figure: mean, interval and p from the same held-out gains, or why there is no interval."""
    ci = sel.get("cv_margin_gain_ci")
    if not ci:
        return f"{_num(sel.get('cv_margin_gain'))} nats: too few items to test (at least {sel.get('min_items')} needed)"
    return f"{_num(sel.get('cv_margin_gain'))} nats, 95% CI {_interval(ci, pct=False)}, p = {_num(sel.get('p_value'))}"


def build_html(result: BuildResult) -> str:
    """The vector card: method, examples, layers, the chosen setting with its honest estimate, side effects."""
    s = result.summary()
    rows = [_row(["method", html.escape(str(s["method"]))]), _row(["examples", _num(s["n_examples"])]),
            _row(["layers with a direction", _num(s["layers"])]),
            _row(["suggested layer / strength", f"{s['layer']} / {_num(s['strength'])}"]),
            _row(["seconds", f"{s['seconds']:.1f}"])]
    sel = s.get("selection")
    if sel:
        rows.append(_row(["held-out gain (claim items)", html.escape(_selection_estimate(sel))]))
        rows.append(_row(["beats unsteered", _badge(bool(sel.get("beats_unsteered")), "yes", "no: strength 0")]))
    side = s.get("side_effects")
    if side:
        rows.append(_row(["side effects", html.escape(str(side.get("reading", "")))]))
    if s.get("attribution_convergence"):
        rows.append(_row(["attributions (for top-k)", html.escape(s["attribution_convergence"]["reading"])]))
    warnings = "".join(f'<div style="color:#b35900">⚠ {html.escape(w)}</div>' for w in s.get("warnings") or [])
    return f"{BOX}<b>Steering vector</b>{TABLE}{''.join(rows)}</table>{warnings}</div>"


def build_text(result: BuildResult) -> str:
    """The vector card as text."""
    s = result.summary()
    lines = [f"Steering vector ({s['method']}, {s['n_examples']} examples, {s['layers']} layers, {s['seconds']:.1f} s)",
             f"suggested layer {s['layer']}, strength {s['strength']:g}"]
    sel = s.get("selection")
    if sel:
        lines.append(f"held-out margin gain (claim items): {_selection_estimate(sel)}; beats "
                     f"unsteered: {'yes' if sel.get('beats_unsteered') else 'no (strength 0)'}")
    if s.get("side_effects"):
        lines.append(f"side effects: {s['side_effects'].get('reading', '')}")
    if s.get("attribution_convergence"):
        lines.append(f"attributions (for top-k): {s['attribution_convergence']['reading']}")
    lines += [f"warning: {w}" for w in s.get("warnings") or []]
    return "\n".join(lines)


def _metric_rows(report: EvaluationReport) -> list[tuple[str, Any, Any]]:
    keys = [k for k in report.metrics_unsteered if not isinstance(report.metrics_unsteered[k], dict | str)]
    return [(k, report.metrics_unsteered.get(k), report.metrics.get(k) if report.steered else None) for k in keys]


def evaluation_html(report: EvaluationReport) -> str:
    """Metrics unsteered | steered | change, the McNemar reading with its interval, side effects, first items."""
    rows = [_row(["metric", "unsteered", "steered", "change"], head=True)]
    for key, before, after in _metric_rows(report):
        change = None if after is None or before is None else after - before
        rows.append(_row([html.escape(key), _num(before), _num(after), _num(change)]))
    setting = (f"layer {report.layer}, strength {_num(report.strength)}" if report.steered else "unsteered only")
    reading = (f"<div>Accuracy gain {_pct(report.gain)}, 95% CI {_interval(report.gain_ci)} "
               f"({html.escape(report.gain_ci_method)}), exact McNemar p = {_num(report.p_value)}: "
               f"<b>{html.escape(report.reading)}</b></div>") if report.steered else ""
    parts = [BOX, f"<div><b>Evaluation</b> · {html.escape(report.kind)} · n = {report.n} · {setting}</div>",
             TABLE, *rows, "</table>", reading]
    if report.margin_note:
        parts.append(f"<div style='color:#555'>{html.escape(report.margin_note)}</div>")
    if report.side_effects:
        parts.append(f"<div><b>Side effects</b>: {html.escape(str(report.side_effects.get('reading', '')))}</div>")
    if report.items:
        parts += [TABLE, _row(["row", "correct (unsteered)", "correct (steered)", "margin (unsteered)",
                               "margin (steered)"], head=True)]
        for item in report.items[:ITEMS_SHOWN]:
            parts.append(_row([_num(item.get("row")), _num(item.get("correct_unsteered")), _num(item.get("correct")),
                               _num(item.get("margin_unsteered")), _num(item.get("margin"))]))
        parts.append("</table>")
        if len(report.items) > ITEMS_SHOWN:
            parts.append(f"<div style='color:#777'>first {ITEMS_SHOWN} of {len(report.items)} items</div>")
    parts.append("</div>")
    return "".join(parts)


def evaluation_text(report: EvaluationReport) -> str:
    """The evaluation as text."""
    lines = [f"Evaluation ({report.kind}, n = {report.n})"]
    for key, before, after in _metric_rows(report):
        lines.append(f"  {key:<24} {_num(before):>8}" + (f" -> {_num(after)}" if after is not None else ""))
    if report.steered:
        lines.append(f"gain {_pct(report.gain)}, 95% CI {_interval(report.gain_ci)}, exact McNemar p = "
                     f"{_num(report.p_value)}: {report.reading}")
    if report.margin_note:
        lines.append(report.margin_note)
    if report.side_effects:
        lines.append(f"side effects: {report.side_effects.get('reading', '')}")
    return "\n".join(lines)


def sweep_html(result: SweepResult) -> str:
    """Gain per layer x strength, coloured, with Holm-significant cells starred and the best cell labelled."""
    flat = [v for row in result.values for v in row]
    colours = diverging_rgb(np.asarray(result.values, dtype=float), symmetric_vmax(flat))
    rows = [_row(["layer \\ strength"] + [_num(s) for s in result.strengths], head=True)]
    for r, layer in enumerate(result.layers):
        cells = [f'<th style="{HEAD}">{layer}</th>']
        for c, value in enumerate(result.values[r]):
            star = " *" if result.significant[r][c] else ""
            cells.append(f'<td style="{CELL};background:{rgb_hex(colours[r][c])}" '
                         f'title="p adj = {_num(result.p_values_adjusted[r][c])}">{_pct(value)}{star}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    best = result.best_of_n
    best_line = (f"<div>{html.escape(best['label'])}: layer {best['layer']}, strength {_num(best['strength'])}, "
                 f"gain {_pct(best['gain'])} (a maximum over cells, not an estimate)</div>") if best else ""
    return (f"{BOX}<div><b>Sweep</b> · {html.escape(result.kind)} · n = {result.n} · unsteered accuracy "
            f"{_pct(result.accuracy_unsteered)} · * = {html.escape(result.correction)}-corrected p &lt; 0.05 over "
            f"{result.cells_tested} cells</div>{TABLE}{''.join(rows)}</table>{best_line}</div>")


def sweep_text(result: SweepResult) -> str:
    """The sweep grid as text."""
    head = "layer\\strength " + " ".join(f"{s:>8g}" for s in result.strengths)
    lines = [f"Sweep ({result.kind}, n = {result.n}), accuracy gain; * = {result.correction}-corrected p < 0.05 over "
             f"{result.cells_tested} cells", head]
    for r, layer in enumerate(result.layers):
        cells = [f"{_pct(v) + ('*' if result.significant[r][c] else ''):>8}" for c, v in enumerate(result.values[r])]
        lines.append(f"{layer:>14} " + " ".join(cells))
    if result.best_of_n:
        b = result.best_of_n
        lines.append(f"{b['label']}: layer {b['layer']}, strength {b['strength']:g}, gain {_pct(b['gain'])} "
                     "(a maximum over cells, not an estimate)")
    return "\n".join(lines)
