"""Steer tab views: the vector card (what the vector is, its nested cross-validated estimate with "best of N"
labelled, its direction's norm, warnings and side effects), the plain CV table, and the build's notes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from components.common import esc, fmt_float, note_html
from grains.viz.formatting import phase_times

if TYPE_CHECKING:
    from components.session import Session
    from grains.vectors import SteeringVector

NO_VECTOR = ("No steering vector in this session yet. Build one below (from the example you attributed or from a "
             "dataset) or load a .safetensors file.")
METHOD_NAMES = {"grains": "GrAInS", "mean": "GrAInS (mean)", "pca": "PCA", "caa": "CAA"}


def _fact(name: str, value: Any) -> str:
    return f'<div class="grains-fact"><span>{esc(name)}</span><b>{esc(value)}</b></div>'


def _ci(ci: Any) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return ""
    return f" (95% CI {fmt_float(ci[0])} to {fmt_float(ci[1])})"


def _p(value: Any) -> str:
    try:
        return f"{float(value):.2g}"
    except (TypeError, ValueError):
        return "n/a"


def selection_html(v: SteeringVector, sel: dict[str, Any]) -> str:
    """The selection: the nested (unbiased) estimate with its test, a win only per `beats_unsteered`, the
    "best of N" maximum labelled as such. Vectors chosen by the older, biased selection say so."""
    if sel.get("estimate") not in ("held-out claim split", "nested cross-validation"):
        return note_html("<b>Chosen by the older cross-validation</b>, which reported the best of many cells as its "
                         "estimate (biased upward), so its claim that steering helps is not reliable. Rebuild the "
                         "vector for an unbiased estimate, or check it on held-out rows in the Evaluate tab.", "warn")
    folds = sel.get("folds")
    estimate = (f"mean margin gain {fmt_float(sel.get('cv_margin_gain'))} nats{_ci(sel.get('cv_margin_gain_ci'))}, "
                f"p = {_p(sel.get('p_value'))} ({esc(sel.get('test') or 'paired test')})")
    accuracy = ""
    if sel.get("cv_accuracy") is not None and sel.get("cv_accuracy_unsteered") is not None:
        accuracy = (f"; accuracy {float(sel['cv_accuracy_unsteered']):.0%} unsteered → "
                    f"{float(sel['cv_accuracy']):.0%} steered (p = {_p(sel.get('cv_accuracy_p_value'))})")
    if sel.get("estimate") == "held-out claim split":
        where = (f"held-out claim split: {sel.get('claim_n')} items that made no choice and built no vector that "
                 "scores them")
        if not sel.get("cv_margin_gain_ci"):
            estimate = (f"mean margin gain {fmt_float(sel.get('cv_margin_gain'))} nats: too few items to test, at "
                        f"least {sel.get('min_items')} needed")
    else:  # vectors built before the held-out claim: their test treated coupled folds as independent
        where = f"nested {folds}-fold cross-validation, its test treats folds coupled through the vector as independent"
    if sel.get("beats_unsteered"):
        html = note_html(f"<b>Beats unsteered</b> ({esc(where)}): {estimate}{accuracy}.", "ok")
    elif float(v.default_strength or 0.0) == 0.0:
        html = note_html(f"<b>The model did not move.</b> No layer and strength beat the unsteered model "
                         f"({esc(where)}: {estimate}{accuracy}), so the suggested strength is 0: steering with this "
                         "suggestion leaves every output exactly as it was.", "warn")
    else:
        html = note_html(f"<b>Not shown to beat unsteered</b> ({esc(where)}): {estimate}{accuracy}.", "info")
    best = sel.get("best_of_n") or {}
    if best.get("layer") is not None:
        html += (f'<div class="grains-muted"><b>{esc(best.get("label", "best of N"))}</b> cells in plain '
                 f"cross-validation: layer {esc(best['layer'])}, strength {float(best.get('strength', 0)):g}, margin "
                 f"gain {fmt_float(best.get('margin_gain'))} nats, accuracy {float(best.get('accuracy', 0)):.0%}. "
                 "A maximum over cells, biased upward: not an estimate.</div>")
    excluded = sel.get("excluded_cells") or []
    if excluded:
        html += (f'<div class="grains-muted">{len(excluded)} cell{"s" if len(excluded) != 1 else ""} left out of the '
                 "choice: over the side-effect budget (mean KL on neutral prompts).</div>")
    return html


def direction_html(v: SteeringVector, layer: Any) -> str:
    """The raw direction at `layer`: its norm (stored while building) and how far v+ and v- cancelled."""
    info = v.direction_stats.get(int(layer)) if layer is not None else None
    if not info:
        return ""
    parts = [f"raw norm |v| = {fmt_float(info.get('raw_norm'), 4)}"]
    if info.get("relative_norm") is not None:
        parts[0] += f" ({float(info['relative_norm']):.2%} of the layer's median hidden-state norm)"
    if info.get("cosine_plus_minus") is not None:
        parts.append(f"cos(v+, v−) = {fmt_float(info['cosine_plus_minus'])}")
    if info.get("plus_norm") is not None and info.get("minus_norm") is not None:
        parts.append(f"|v+| = {fmt_float(info['plus_norm'], 4)}, |v−| = {fmt_float(info['minus_norm'], 4)}")
    if info.get("cancellation") is not None:
        parts.append(f"|v+ − v−| / (|v+| + |v−|) = {float(info['cancellation']):.1%}")
    return f'<div class="grains-muted"><b>Direction at layer {esc(layer)}:</b> {esc("; ".join(parts))}.</div>'


def side_effects_html(v: SteeringVector) -> str:
    """What the suggested setting costs on neutral text (stored by build)."""
    side = (v.meta or {}).get("side_effects")
    if side and side.get("reading"):
        kind = "warn" if side.get("within_budget") is False else "info"
        return note_html(f"<b>Side effects</b> at the suggested layer and strength: {esc(side['reading'])}.", kind)
    if float(v.default_strength or 0.0) == 0.0:
        return '<div class="grains-muted">Side effects: none at strength 0 (outputs are unchanged).</div>'
    return ('<div class="grains-muted">Side effects of the suggested setting were not recorded with this vector: '
            "the Evaluate tab measures them (KL on neutral prompts, repetition) beside every steered result.</div>")


def vector_card(session: Session) -> str:
    """HTML: what the session's vector is, what it suggests, its nested cross-validated estimate, the direction's
    raw norm and v+/v- cosine, its warnings, its side effects, its steerability and whether its attributions
    converged."""
    v = session.vector
    if v is None:
        return note_html(esc(NO_VECTOR), "info")
    meta = v.meta or {}
    method = METHOD_NAMES.get(v.method, v.method)
    k = f", k = {v.k}" if v.k else ""
    built_for = v.model_id + (" (another model: allowed)" if session.allow_other_model and
                              session.model_name != v.model_id else "")
    facts = [_fact("Method", f"{method}{k}"), _fact("Examples", v.n_examples), _fact("Built for", built_for)]
    if meta.get("prompt_format"):
        facts.append(_fact("Prompt format", meta["prompt_format"]))
    facts += [_fact("Suggested layer", v.default_layer), _fact("Suggested strength", f"{v.default_strength:g}")]
    html = (f'<div class="grains-vector-title">Vector: {esc(session.vector_label)}</div>'
            f'<div class="grains-facts">{"".join(facts)}</div>')
    sel = meta.get("selection")
    if sel:
        html += selection_html(v, sel)
    elif meta.get("note"):
        html += note_html(esc(meta["note"]), "info")
    html += direction_html(v, v.default_layer)
    for warning in v.warnings():
        html += note_html(esc(warning), "warn")
    html += side_effects_html(v)
    if meta.get("steerability"):
        html += f'<div class="grains-muted"><b>Steerability:</b> {esc(meta["steerability"]["reading"])}</div>'
    if meta.get("attribution_convergence"):
        html += (f'<div class="grains-muted"><b>Attributions (for top-k):</b> '
                 f'{esc(meta["attribution_convergence"]["reading"])}</div>')
    return html


def cv_table(session: Session) -> list[list[Any]]:
    """The plain cross-validation table (every cell; its maximum is a best-of-N figure, not an estimate)."""
    v = session.vector
    sel = (v.meta or {}).get("selection") if v is not None else None
    rows = []
    for row in (sel or {}).get("table", []):
        layer = "unsteered" if row.get("layer") is None else row["layer"]
        rows.append([layer, row.get("strength"), round(row.get("margin_gain", 0.0), 4),
                     round(row.get("margin_gain_std", 0.0), 4), round(row.get("accuracy", 0.0), 3)])
    return rows


def status_after_refresh(session: Session) -> str:
    """The build status after a page load or model switch: empty when nothing was built with this model, else a
    note that the previous build's status was for another model."""
    last = session.last_build or {}
    if last and last.get("model") not in (None, session.model_name):
        return note_html(f"The model changed to {esc(session.model_name)}: the last build was for "
                         f"{esc(last.get('model'))}; the card above shows the vector this session uses now.", "info")
    return ""


def build_note(summary: dict[str, Any], cross_validated: bool) -> str:
    """The build's result in one note: a plain warn note when the model did not move (strength 0 suggested),
    never a green success box for that; ok otherwise."""
    n = summary["n_examples"]
    skipped = summary.get("skipped") or []
    took = f"Built in {summary['seconds']:.0f} s from {n} example{'s' if n != 1 else ''}"
    if summary.get("reused_attribution"):
        took += " (reused the attribution on screen: no second IG run)"
    phases = phase_times(summary.get("timings") or {}, floor=0.05)
    if phases:
        took += f" ({esc(phases)})"
    extra = f" {esc(summary.get('note', ''))}" if summary.get("note") else ""
    if skipped:
        extra += f" {len(skipped)} examples skipped (first: {esc(skipped[0]['reason'])})."
    if cross_validated and float(summary.get("strength") or 0.0) == 0.0:
        return note_html(f"<b>The model did not move: strength 0 suggested.</b> {took}.{extra}", "warn")
    return note_html(f"{took}.{extra}", "ok")
