"""Evaluate tab views: the metric table with the McNemar reading and interval, side effects beside every steered
result, the per-item table, the sweep's note (Holm-corrected, "best of N" labelled) and its two figures."""

from __future__ import annotations

from typing import Any

from components.actions.evaluate import items_table
from components.charts import CORRECTION_NAMES, effect_side_effect_plot, sweep_heatmap
from components.common import esc, fmt_float, note_html
from grains.viz.formatting import percent

KIND_LABELS = {"truthfulqa": "TruthfulQA multiple choice", "pairs": "preference pairs", "probes": "yes/no probes"}
EVAL_WAITING = '<div class="grains-placeholder">Press Evaluate.</div>'
SWEEP_WAITING = '<div class="grains-placeholder">Press Run sweep.</div>'


def _pct(value: Any) -> str:
    return percent(value, 1)


def _dist(value: Any) -> str:
    if not value:
        return "n/a"
    return ", ".join(f"{esc(k)}: {float(v):.0%}" for k, v in value.items())


def _layers(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def result_html(result: dict) -> str:
    """Metric table (unsteered, steered, change), the reading, p-value and CI."""
    kind = result.get("kind", "")
    steered = result.get("steered")
    metrics = [("accuracy" if kind != "truthfulqa" else "MC1 accuracy", "accuracy", _pct)]
    if kind == "truthfulqa":
        metrics.append(("MC2 (prob. mass on true answers)", "mc2", _pct))
    metrics.append(("mean margin (log-prob)", "margin", lambda v: fmt_float(v)))
    if kind == "probes":
        metrics += [("precision", "precision", _pct), ("recall", "recall", _pct), ("F1", "f1", _pct),
                    ("yes ratio", "yes_ratio", _pct)]
    rows = []
    for label, key, fmt in metrics:
        before, after = result.get(f"{key}_unsteered"), result.get(key)
        change = ""
        if steered and isinstance(before, int | float) and isinstance(after, int | float):
            change = f"{(after - before) * (100 if fmt is _pct else 1):+.2f}{' pts' if fmt is _pct else ''}"
        rows.append(f"<tr><th>{esc(label)}</th><td class='grains-num'>{fmt(before)}</td>"
                    f"<td class='grains-num'>{fmt(after) if steered else '—'}</td><td class='grains-num'>{change}"
                    f"</td></tr>")
    if kind != "truthfulqa":
        rows.append(f"<tr><th>answers given</th><td>{_dist(result.get('answer_distribution_unsteered'))}</td>"
                    f"<td>{_dist(result.get('answer_distribution')) if steered else '—'}</td><td></td></tr>")
    setting = result.get("steering") or {}
    norm = "" if setting.get("normalize", True) else ", norm not kept"
    extras = [f"prompt format {result['prompt_format']}"] if result.get("prompt_format") else []
    if result.get("length_normalization"):
        extras.append("length-normalised log-probs")
    head = (f"<div class='grains-muted'>{esc(KIND_LABELS.get(kind, kind))} · {esc(result.get('dataset', ''))} · "
            f"n = {result.get('n')}" + (f" · layer {esc(_layers(result.get('layer')))}, strength "
                                        f"{result.get('strength'):g}{norm}" if steered else " · unsteered only")
            + "".join(f" · {esc(e)}" for e in extras) + "</div>")
    table = ("<table class='grains-summary'><tr><th></th><th>unsteered</th><th>steered</th><th>change</th></tr>"
             + "".join(rows) + "</table>")
    if not steered:
        return head + table
    p = result.get("p_value")
    kind_note = "ok" if p is not None and p < 0.05 and (result.get("gain") or 0) > 0 else "info"
    changed = (result.get("only_unsteered_correct") or 0) + (result.get("only_steered_correct") or 0)
    reading = note_html(f"<b>{esc(result.get('reading', ''))}</b><br>{interval_sentence(result, changed)}", kind_note)
    margin_note = note_html(esc(result["margin_note"]), "info") if result.get("margin_note") else ""
    bias = ""
    dist = result.get("answer_distribution") or {}
    if dist and max(dist.values()) >= 0.8:
        top = max(dist, key=dist.get)
        bias = note_html(f"Steered, the model answers {esc(top)} {dist[top]:.0%} of the time: an accuracy change may "
                         "come from a shifted answer bias rather than better answers.", "warn")
    return head + table + reading + margin_note + bias + side_effects_note(result)


def interval_sentence(result: dict, changed: int) -> str:
    """One sentence saying what the p-value and the interval are, and why they agree (or why there are none)."""
    if result.get("gain_ci") is None:
        return "With this few items no test is run and no interval is given: evaluate more rows to test the gain."
    if "McNemar" in str(result.get("gain_ci_method", "")):
        return (f"The p-value is the exact McNemar test on the {changed} item{'s' if changed != 1 else ''} whose "
                "answer changed between right and wrong; the 95% interval inverts that same test (exact, given how "
                "many items changed), so it excludes 0 exactly when p < 0.05.")
    return "Exact McNemar test on the items that changed; 95% paired-bootstrap interval of the accuracy gain."


def side_effects_note(result: dict) -> str:
    """The steered setting's side effects (KL on neutral prompts, repetition), beside the result."""
    side = result.get("side_effects")
    if not result.get("steered"):
        return ""
    if not side:
        return note_html("Side effects were not measured for this result.", "warn")
    if float(result.get("strength") or 0.0) == 0.0:
        return note_html(f"<b>Side effects:</b> none at strength 0 ({esc(side.get('reading', ''))}).", "info")
    kind = "warn" if side.get("within_budget") is False else "info"
    return note_html(f"<b>Side effects</b> (what this setting costs on neutral text): {esc(side.get('reading', ''))}."
                     , kind)


ITEM_HTML_HEADERS = ["row", "question", "answer unsteered", "answer steered", "right", "margin"]


def items_html(result: dict) -> str:
    """The per-item table for the page: dataset row numbers, the question and both answers wrapped inside fixed
    columns (nothing off-screen), right/wrong before -> after and the margin before -> after."""
    rows = items_table(result)
    if not rows:
        return ""
    steered = bool(result.get("steered"))
    cell = "padding:3px 6px;vertical-align:top;border-bottom:1px solid #e5e7eb;"
    wrap = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;"

    def mark(ok: Any) -> str:
        return "✓" if ok else "✗"

    head = "".join(f'<th style="{cell}text-align:left;white-space:normal;word-break:normal;">{esc(h)}</th>'
                   for h in ITEM_HTML_HEADERS)  # headers wrap between words only
    body = []
    for row, question, ans_u, ans_s, ok_u, ok_s, m_u, m_s in rows:
        moved = steered and bool(ok_u) != bool(ok_s)
        style = "background:#ecfdf5;" if moved and ok_s else ("background:#fef2f2;" if moved else "")
        right = f"{mark(ok_u)} → {mark(ok_s)}" if steered else mark(ok_u)
        margin = f"{fmt_float(m_u, 2)} → {fmt_float(m_s, 2)}" if steered else fmt_float(m_u, 2)
        body.append(f'<tr style="{style}"><td style="{cell}text-align:right;">{esc(row)}</td>'
                    f'<td style="{cell}{wrap}">{esc(question)}</td><td style="{cell}{wrap}">{esc(ans_u)}</td>'
                    f'<td style="{cell}{wrap}">{esc(ans_s) if steered else "—"}</td>'
                    f'<td style="{cell}white-space:nowrap;">{right}</td>'
                    f'<td style="{cell}white-space:nowrap;">{margin}</td></tr>')
    cols = ('<colgroup><col style="width:52px"><col style="width:34%"><col><col><col style="width:62px">'
            '<col style="width:110px"></colgroup>')
    return (f'<div class="grains-items-table" style="max-width:100%;max-height:520px;overflow-y:auto;'
            f'overflow-x:hidden;"><table style="width:100%;table-layout:fixed;border-collapse:collapse;'
            f'font-size:0.9em;">{cols}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def correction_name(result: dict) -> str:
    name = str(result.get("correction") or "uncorrected")
    return CORRECTION_NAMES.get(name, name)


def best_cell(result: dict) -> str:
    """The sweep's largest gain, always named with its "best of N" label (a maximum over cells, not an estimate)."""
    best = result.get("best_of_n")
    if not best or best.get("layer") is None:
        return "no steered cell was tested"
    adjusted = best.get("p_value_adjusted")
    p_text = f", {correction_name(result)}-adjusted p = {float(adjusted):.2g}" if adjusted is not None else ""
    return (f"{esc(best.get('label', 'best of N'))}: layer {esc(best['layer'])}, strength {float(best['strength']):g}, "
            f"{float(best.get('gain') or 0.0) * 100:+.1f} points{p_text} (the largest of the cells, biased upward; "
            "check it on other rows before trusting it)")


def sweep_note(result: dict) -> str:
    """The sweep's reading: unsteered accuracy, the correction and cell count, the significant cells, best of N."""
    tested = result.get("cells_tested", 0)
    significant = sum(bool(v) for row in result["significant"] for v in row)
    kind = "ok" if significant else "info"
    text = (f"Unsteered accuracy {result['accuracy_unsteered']:.1%} on {result['n']} rows "
            f"({esc(result['dataset'])}). Exact McNemar test per cell, {esc(correction_name(result))}-corrected over "
            f"{tested} cells tested (strength 0 is not tested): {significant} significant at 0.05. "
            f"Largest gain, {best_cell(result)}.")
    if all(float(v) == 0.0 for row in result["values"] for v in row):
        text = (f"<b>No cell moved:</b> at every layer and strength tried, accuracy on the {result['n']} rows is "
                f"exactly the unsteered {result['accuracy_unsteered']:.1%} (gain 0 in every cell), so the heatmap "
                "has one colour. Try larger strengths, other layers or another vector.<br>" + text)
        kind = "warn"
    return note_html(text, kind)


def side_effect_figure(result: dict, layer: Any) -> Any:
    """Accuracy gain against mean KL per strength, at the Steer tab's layer when it was swept (else the best-of-N
    layer), with the KL budget; None without KL."""
    from grains.side_effects import DEFAULT_KL_BUDGET

    if not result.get("kl"):
        return None
    layers = result["layers"]
    try:
        chosen = int(layer)
    except (TypeError, ValueError):
        chosen = None
    if chosen not in layers:
        chosen = (result.get("best_of_n") or {}).get("layer", layers[0])
    return effect_side_effect_plot(layers, result["strengths"], [[v * 100 for v in row] for row in result["values"]],
                                   result["kl"], budget=DEFAULT_KL_BUDGET, chosen_layer=chosen,
                                   effect_label="accuracy gain (points)",
                                   title=f"Effect against side effect per strength (layer {chosen})")


def sweep_figure(result: dict) -> Any:
    """The heatmap of accuracy gains: Holm-corrected marks, the number of cells tested, the best-of-N cell."""
    return sweep_heatmap(result["layers"], result["strengths"], [[v * 100 for v in row] for row in result["values"]],
                         significant=result["significant"], title="Accuracy gain over unsteered (points)",
                         value_label="gain (points)", cells_tested=result.get("cells_tested"),
                         correction=result.get("correction"), best=result.get("best_of_n"))



def timing_note(took: float, first_eta: float | None) -> str:
    """How long the run took, beside the first estimate (measured on the first rows, for the rows of that pass)."""
    return (f"<div class='grains-muted'>Took {took:.0f} s" + (
        f" (the first estimate, measured on the first rows, was {first_eta:.0f} s for the unsteered rows)"
        if first_eta is not None else "") + ".</div>")
