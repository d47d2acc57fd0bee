"""Attribute tab views: the heatmap with its selection, f(chosen) − f(rejected) and the convergence check, the
image-vs-text share, s+ and s− with what a build ablates, and the steered heatmap beside the unsteered one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from components.attribution_cache import is_cached
from components.common import attribution_chart, esc, fmt_float, note_html
from grains.viz.heatmap import render_token_heatmap, result_labels, template_indices, visible_token

if TYPE_CHECKING:
    from components.actions.attribution import SelectionView
    from grains.attribution import AttributionResult
    from grains.compare_attributions import AttributionDifference
    from grains.encoding import EncodedExample
    from grains.steering import Steering

OVERRIDE_NAMES = {"force_positive": "forced positive", "force_negative": "forced negative", "drop": "dropped",
                  "auto": "back to automatic"}
EMPTY_HEATMAP = ('<div class="grains-placeholder">Run an attribution to see which prompt tokens push the model toward '
                 'the chosen answer (red) or the rejected one (blue).</div>')


def summary_html(result: AttributionResult) -> str:
    """f(chosen) - f(rejected), the completeness check and a warning when IG has not converged."""
    margin = result.f_input
    prefers = "the chosen answer" if margin > 0 else "the rejected answer"
    total = sum(result.plus_scores) + sum(result.minus_scores)
    rel = result.relative_delta
    target = "whole response" if result.target == "sequence" else "last response token"
    rows = [
        ("f(chosen) − f(rejected)", f"{margin:+.3f}", f"log P(chosen | prompt) − log P(rejected | prompt): the "
                                                      f"model prefers {prefers}"),
        ("at the baseline", f"{result.f_baseline:+.3f}", "f with the embeddings replaced by the baseline"),
        ("sum of all scores", f"{total:+.3f}", "IG completeness: should equal f(x) − f(baseline) = "
                                               f"{result.f_input - result.f_baseline:+.3f}"),
        ("convergence delta", f"{result.delta:+.4f}", f"{rel:.1%} of |f(x) − f(baseline)|, "
                                                      f"{result.abs_relative_delta:.1%} of the sum of |scores|"),
    ]
    table = "".join(f"<tr><th>{esc(a)}</th><td class='grains-num'>{esc(b)}</td><td>{esc(c)}</td></tr>"
                    for a, b, c in rows)
    html = f'<table class="grains-summary">{table}</table>'
    tol = getattr(result, "tolerance", None)
    refined = (f" (started at {result.steps}, tolerance {tol:.0%})" if tol else "")
    html += (f'<div class="grains-muted">Target: {esc(target)} · {result.points_used or result.steps} '
             f'{esc(result.points)} points{esc(refined)}, {result.gradient_evals or result.steps} gradient evaluations '
             f'· baseline {esc(result.baseline)} · {result.seconds:.1f} s{cached_note(result)}</div>')
    html += note_html(convergence_message(result), "ok" if result.converged else "warn")
    return html


def cached_note(result: AttributionResult) -> str:
    """ "(computed earlier; served from this server's memory)" for a result the attribution cache answered."""
    return " (computed earlier; served from this server's memory)" if is_cached(result) else ""


def convergence_message(result: AttributionResult) -> str:
    """Whether the scores add up, read against both |f(x) − f(baseline)| and the sum of |scores|, and what to do."""
    rel, rel_abs = result.relative_delta, result.abs_relative_delta
    both = f"{rel:.1%} of |f(x) − f(baseline)|, {rel_abs:.1%} of the sum of |scores|"
    tolerance = getattr(result, "tolerance", None) or 0.05
    if result.converged:
        return (f"IG converged: the scores add up to the change in f (delta {both}; the criterion is "
                f"{tolerance:.0%} of the gap).")
    if result.convergence == "gap too small to judge":
        return (f"<b>Gap too small to judge</b>: {result.convergence_reading}. A relative figure means little on a "
                "gap this small; the scores add up by the absolute rule (1% of the sum of |scores|).")
    if rel_abs <= 0.05 < rel:
        advice = (f"against the scores shown the error is small, but it is {abs(result.delta):.2f} nats, more than "
                  "the gap f(x) − f(baseline) allows; large scores of both signs may themselves be integration "
                  "error.")
    else:
        advice = "the error is large against the heatmap itself."
    cap = (f" Refinement stopped at its cap of {result.gradient_evals} gradient evaluations."
           if getattr(result, "tolerance", None) else "")
    return (f"<b>Not converged</b> (delta {both}): {advice}{cap} Read the scores with care: raise the IG steps, "
            "keep the tolerance on (5%) with the graded rule, or try the last-token target, whose path is smoother.")


def image_html(result: AttributionResult) -> str:
    """The image tokens' share of the prompt's |attribution| (empty for a text-only result)."""
    extra = result.extra or {}
    if "image_share" not in extra:
        return ""
    share = extra.get("image_share", 0.0)
    return (f'<div class="grains-image-share"><b>Image vs text.</b> {extra.get("image_token_count", 0)} image tokens '
            f'carry {share:.0%} of the prompt\'s total |attribution| (text: {1 - share:.0%}). Sum of image scores '
            f'{fmt_float(extra.get("image_score"))}, text and response {fmt_float(extra.get("text_score"))}.'
            f'<div class="grains-bar"><span style="width:{share * 100:.1f}%"></span></div></div>')


def sequences_html(result: AttributionResult, sel: SelectionView) -> str:
    """s+ and s- with the tokens that build ablates in each."""
    p = result.prompt_len
    plus = render_token_heatmap(result.plus_tokens, result.plus_scores, sel.plus.positive, sel.plus.negative,
                                sel.plus.excluded, title="s+ = prompt + chosen", caption=None)
    minus = render_token_heatmap(result.minus_tokens, result.minus_scores, sel.minus.positive, sel.minus.negative,
                                 sel.minus.excluded, title="s− = prompt + rejected", caption=None)
    return (f'<div class="grains-muted">Building a vector from this example ablates the top-k of each whole '
            f'sequence (the prompt is tokens 0–{p - 1}; the rest is the answer). Token overrides apply to both.</div>'
            f"{plus}{minus}")


def render(result: AttributionResult, example: EncodedExample | None, sel: SelectionView,
           overrides: dict[str, list[int]], show_template: bool = False) -> tuple[str, str, Any, str]:
    """(heatmap HTML, per-sequence HTML, bar chart, selection note) for an attribution and its selection; template
    and system-prompt tokens are collapsed unless `show_template`."""
    labels = result_labels(result, example)
    hidden = template_indices(result, hide=not show_template)
    heat = render_token_heatmap(result.tokens, result.scores, sel.prompt.positive, sel.prompt.negative,
                                sel.prompt.excluded, title="Prompt tokens (score in s+ plus score in s−; outlines: "
                                "top-k of these sums)", labels=labels, hidden=hidden)
    chart = attribution_chart(result.tokens, result.scores, selected=sel.prompt.positive + sel.prompt.negative,
                              excluded=sel.prompt.excluded, hidden=hidden, labels=labels,
                              title="Attribution per prompt token")
    lines = [f"Top-{sel.k}: {len(sel.prompt.positive)} in I+ (highest), {len(sel.prompt.negative)} in I− (lowest) of "
             f"{sel.eligible} selectable prompt tokens, ranked by the summed score shown."] + sel.notes
    lines += rank_only_notes(result, sel, labels)
    lines.append("A vector built from this example picks top-k in s+ and in s− separately (see \"What a vector "
                 "built from this example ablates\"), so its sets can differ from these outlines.")
    if any(overrides.values()):
        lines.append("Overrides: " + "; ".join(f"{OVERRIDE_NAMES[key]} {', '.join(map(str, v))}"
                                               for key, v in overrides.items() if v) + ".")
    return heat, sequences_html(result, sel), chart, " ".join(lines)


def rank_only_notes(result: AttributionResult, sel: SelectionView, labels: list[str]) -> list[str]:
    """Sentences for the tokens whose top-k set goes against their colour: red tokens in I− (fewer than k tokens
    score below 0, so the k lowest include positive ones) and blue tokens in I+."""
    def names(indices: list[int]) -> str:
        return ", ".join(f"\"{labels[i].strip()}\" ({result.scores[i]:+.3f})" for i in indices[:6])

    out = []
    red_low = [i for i in sel.prompt.negative if result.scores[i] > 0]
    blue_high = [i for i in sel.prompt.positive if result.scores[i] < 0]
    if red_low:
        out.append(f"Dashed blue outline on red: {names(red_low)} score above 0 (they push toward the chosen answer) "
                   f"but are among the {sel.k} lowest, so they are in I− by rank only: fewer than k = {sel.k} "
                   "selectable tokens score below 0. Lower k to keep only tokens that push toward the rejected "
                   "answer.")
    if blue_high:
        out.append(f"Dashed red outline on blue: {names(blue_high)} score below 0 but are among the {sel.k} "
                   f"highest, so they are in I+ by rank only. Lower k to keep only tokens that push toward the "
                   "chosen answer.")
    return out


def _convergence_cell(result: AttributionResult) -> str:
    word = "converged" if result.converged else "not converged"
    return f"{word} (delta {result.relative_delta:.1%} of |f(x) − f(x′)|, {result.abs_relative_delta:.1%} of Σ|scores|)"


def steered_view_html(unsteered: AttributionResult, steered: AttributionResult, diff: AttributionDifference,
                      steering: Steering) -> str:
    """The unsteered and steered heatmaps side by side, their difference, both margins and both convergence checks."""
    excluded = [i for i, content in enumerate(unsteered.content_mask) if not content]
    setting = steering.describe()
    left = render_token_heatmap(unsteered.tokens, unsteered.scores, excluded=excluded, title="Unsteered model",
                                caption=None)
    right = render_token_heatmap(steered.tokens, steered.scores, excluded=excluded,
                                 title=f"Steered model ({setting})", caption=None)
    delta = render_token_heatmap(diff.tokens, diff.scores, excluded=excluded,
                                 title="Difference: steered − unsteered, per prompt token",
                                 caption="Red: the token pushes more toward the chosen answer with the vector on; "
                                         "blue: less. Each heatmap has its own colour scale (legend).")
    rows = [("f(chosen) − f(rejected)", f"{diff.margin_unsteered:+.3f}", f"{diff.margin_steered:+.3f}"),
            ("IG convergence", _convergence_cell(unsteered), _convergence_cell(steered)),
            ("IG points, seconds", f"{unsteered.points_used or unsteered.steps}, {unsteered.seconds:.1f} s",
             f"{steered.points_used or steered.steps}, {steered.seconds:.1f} s{cached_note(steered)}")]
    table = "".join(f"<tr><th>{esc(a)}</th><td>{esc(b)}</td><td>{esc(c)}</td></tr>" for a, b, c in rows)
    html = ('<div class="grains-steered-attribution">'
            '<div style="display:flex;gap:12px;flex-wrap:wrap">'
            f'<div class="grains-steered-col" style="flex:1 1 300px;min-width:0">{left}</div>'
            f'<div class="grains-steered-col" style="flex:1 1 300px;min-width:0">{right}</div></div>'
            f'<div class="grains-steered-diff" style="margin-top:10px">{delta}</div>'
            '<table class="grains-summary"><tr><th></th><th>unsteered</th><th>steered</th></tr>'
            f"{table}</table>")
    change = diff.margin_change
    moved = ("toward the chosen answer" if change > 0 else "toward the rejected answer" if change < 0
             else "not at all")
    html += (f'<div class="grains-muted">The vector moved f(chosen) − f(rejected) by {change:+.3f} nats ({moved}).'
             f" Largest changes: " + ", ".join(f"{esc(visible_token(t['token']))} {t['difference']:+.3g}"
                                                for t in diff.top_changes(5)) + ".</div>")
    if steering.is_identity:
        html += note_html("Strength 0: the model is not steered, so the two heatmaps are the same and the "
                          "difference is 0.", "info")
    if diff.converged:
        html += note_html("Both attributions converged: the difference is not integration error.", "ok")
    else:
        html += note_html("<b>Not both converged</b>: the difference mixes in integration error. Raise the IG steps "
                          "or keep the tolerance on before reading it.", "warn")
    return html + "</div>"
