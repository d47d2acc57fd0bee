"""Attribution view: prompt, chosen, rejected (+ image for a VLM) -> contrastive IG heatmap, bar chart, patch overlay,
f(chosen) - f(rejected) and the convergence check; top-k selection with click-to-toggle tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from components.app_state import DEFAULT_EXAMPLE, Session, cycle_override, parse_indices
from components.common import (
    MODEL_QUEUE,
    OVERLAY_ALPHA,
    OVERLAY_HEIGHT,
    api_endpoint,
    attribution_chart,
    chosen_format,
    esc,
    fmt_float,
    guarded,
    mark_outdated,
    note_html,
    one_status,
    outdated_html,
    prompt_format_dropdown,
    prompt_format_update,
    safe_image,
    session_model,
)
from components.datasets import dataset_choices, image_examples, load_rows, text_examples
from grains.attribution import DEFAULT_STEPS, DEFAULT_TOLERANCE
from grains.errors import GrainsError, InputError
from grains.serialize import to_jsonable
from grains.viz.heatmap import render_token_heatmap, result_labels, template_indices

MAX_STEPS_UI = 64
OVERRIDE_NAMES = {"force_positive": "forced positive", "force_negative": "forced negative", "drop": "dropped",
                  "auto": "back to automatic"}
# Clicking a token sends its index to Python (gr.HTML's trigger); the heatmap HTML itself carries no script.
TOKEN_CLICK_JS = """
element.addEventListener('click', (event) => {
  const tok = event.target.closest('.grains-tok');
  if (tok && element.contains(tok)) { trigger('click', {index: Number(tok.dataset.index)}); }
});
"""
EMPTY_HEATMAP = ('<div class="grains-placeholder">Run an attribution to see which prompt tokens push the model toward '
                 'the chosen answer (red) or the rejected one (blue).</div>')
TARGETS = [("whole response: log P(answer | prompt)", "sequence"), ("last response token (paper's scripts)", "last")]
BASELINES = [("zero embeddings (BOS/template kept)", "zero"), ("pad-token embeddings", "pad")]
BROWSE_DEFAULT = "sentiment_pairs"  # the dataset of the default example
POINTS = [("graded: log-spaced near the baseline + Gauss-Legendre", "graded"), ("Gauss-Legendre", "gauss-legendre"),
          ("midpoint Riemann", "midpoint")]


def whole(value: Any, what: str) -> int:
    """A whole number from a UI/API value (2.0 is fine, 2.5 is not)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number.") from None
    if not number.is_integer():
        raise InputError(f"{what} must be a whole number, not {value}.")
    return int(number)


def open_image(path: str | None, lm: Any) -> Any:
    """The uploaded image for a VLM (validated); None for a text model when no image was given."""
    if not path:
        return None
    from grains.images import load_image

    if not lm.is_vlm:
        raise InputError("This is a text-only model: it cannot take an image. Load a vision-language model "
                         "(e.g. tiny-random-llava) or remove the image.")
    return load_image(path)


def tolerance_value(value: Any) -> float | None:
    """The IG tolerance from the UI (a percentage; 0 turns refinement off)."""
    try:
        percent = float(value)
    except (TypeError, ValueError):
        raise InputError("The IG tolerance must be a number (percent).") from None
    if not 0 <= percent < 100:
        raise InputError("The IG tolerance must be between 0 and 100 percent (0 turns refinement off).")
    return percent / 100 if percent > 0 else None


def run_attribution(session: Session, prompt: str, chosen: str, rejected: str, image_path: str | None,
                    steps: Any, target: str, baseline: str, points: str = "graded",
                    tolerance: Any = DEFAULT_TOLERANCE * 100, prompt_format: Any = None) -> Any:
    """Contrastive IG on the session's model in `prompt_format` (raw/qa/chat; None: the model's); the result and
    the encoded example go into the session."""
    from grains.attribution import attribute
    from grains.encoding import encode_example

    lm = session_model(session).with_format(chosen_format(prompt_format))
    steps = whole(steps, "IG steps")
    tol = tolerance_value(tolerance)
    image = open_image(image_path, lm)
    with lm.lock:  # no steering hook of another request can be on the model while we attribute
        result = attribute(lm, prompt, chosen, rejected, image=image, steps=steps, target=target,
                           baseline=baseline, points=points, tolerance=tol, prompt_format=lm.prompt_format)
    session.example = encode_example(lm, prompt, chosen, rejected, image=image)
    session.attribution = result
    session.inputs = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "image": image_path or None,
                      "steps": steps, "target": target, "baseline": baseline, "points": points, "tolerance": tol,
                      "prompt_format": lm.prompt_format}
    session.clear_overrides()
    return result


@dataclass
class SelectionView:
    prompt: Any  # TokenSelection over the prompt heatmap
    plus: Any
    minus: Any
    eligible: int
    k: int
    notes: list[str] = field(default_factory=list)


def current_selection(session: Session, k: Any, content_only: bool, skip_punctuation: bool) -> SelectionView:
    """Top-k over the prompt heatmap, and per sequence (s+, s-) as build ablates them, with the session's overrides."""
    from grains.ablation import select_for_example
    from grains.topk import select_top_k

    result, example = session.attribution, session.example
    k = whole(k, "k")
    n = len(result.tokens)
    ov = session.overrides
    for key in ov:
        ov[key] = [i for i in ov[key] if 0 <= i < n]
    eligible = example.eligible_mask("plus", bool(content_only), bool(skip_punctuation))[:n]
    prompt_sel = select_top_k(result.scores, k, eligible, force_positive=ov["force_positive"],
                              force_negative=ov["force_negative"], drop=ov["drop"], strict=False)
    overrides = {which: dict(ov) for which in ("plus", "minus")}
    per_seq = select_for_example(example, result, k, bool(content_only), bool(skip_punctuation), strict=False,
                                 overrides=overrides)
    count = sum(eligible)
    notes = []
    if k > count:
        notes.append(f"Only {count} prompt tokens can be selected, fewer than k = {k}: all of them are used.")
    return SelectionView(prompt=prompt_sel, plus=per_seq["plus"], minus=per_seq["minus"], eligible=count, k=k,
                         notes=notes)


def summary_html(result: Any) -> str:
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
             f'· baseline {esc(result.baseline)} · {result.seconds:.1f} s</div>')
    html += note_html(convergence_message(result), "ok" if result.converged else "warn")
    return html


def convergence_message(result: Any) -> str:
    """Whether the scores add up, read against both |f(x) − f(baseline)| and the sum of |scores|, and what to do."""
    rel, rel_abs = result.relative_delta, result.abs_relative_delta
    both = f"{rel:.1%} of |f(x) − f(baseline)|, {rel_abs:.1%} of the sum of |scores|"
    if result.converged:
        return (f"IG converged: the scores add up to the change in f (delta {both}; the criterion is 5% of the "
                "gap, or, when the gap is near 0, 1% of the sum of |scores| and under 0.05 nats).")
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


def image_html(result: Any) -> str:
    extra = result.extra or {}
    if "image_share" not in extra:
        return ""
    share = extra.get("image_share", 0.0)
    return (f'<div class="grains-image-share"><b>Image vs text.</b> {extra.get("image_token_count", 0)} image tokens '
            f'carry {share:.0%} of the prompt\'s total |attribution| (text: {1 - share:.0%}). Sum of image scores '
            f'{fmt_float(extra.get("image_score"))}, text and response {fmt_float(extra.get("text_score"))}.'
            f'<div class="grains-bar"><span style="width:{share * 100:.1f}%"></span></div></div>')


def overlay_image(result: Any, image_path: str | None, alpha: float) -> Any:
    """The photo with the patch heatmap over it (None without an image grid)."""
    if result is None or result.image_grid is None or not image_path:
        return None
    from grains.images import load_image
    from grains.overlay import patch_overlay

    box = (result.extra or {}).get("crop_box")
    return patch_overlay(load_image(image_path), result.image_grid, alpha=float(alpha), colorbar=True,
                         box=tuple(box) if box else None)


def sequences_html(result: Any, sel: SelectionView) -> str:
    """s+ and s- with the tokens that build ablates in each."""
    p = result.prompt_len
    plus = render_token_heatmap(result.plus_tokens, result.plus_scores, sel.plus.positive, sel.plus.negative,
                                sel.plus.excluded, title="s+ = prompt + chosen", caption=None)
    minus = render_token_heatmap(result.minus_tokens, result.minus_scores, sel.minus.positive, sel.minus.negative,
                                 sel.minus.excluded, title="s− = prompt + rejected", caption=None)
    return (f'<div class="grains-muted">Building a vector from this example ablates the top-k of each whole '
            f'sequence (the prompt is tokens 0–{p - 1}; the rest is the answer). Token overrides apply to both.</div>'
            f"{plus}{minus}")


def render(session: Session, k: Any, content_only: bool, skip_punctuation: bool,
           show_template: bool = False) -> tuple[str, str, Any, str]:
    """(heatmap HTML, per-sequence HTML, bar chart, selection note) for the session's last attribution; template
    and system-prompt tokens are collapsed unless `show_template`."""
    result = session.attribution
    if result is None:
        return EMPTY_HEATMAP, "", None, ""
    sel = current_selection(session, k, content_only, skip_punctuation)
    labels = result_labels(result, session.example)
    hidden = template_indices(result, hide=not show_template)
    heat = render_token_heatmap(result.tokens, result.scores, sel.prompt.positive, sel.prompt.negative,
                                sel.prompt.excluded, title="Prompt tokens (score in s+ plus score in s−)",
                                labels=labels, hidden=hidden)
    chart = attribution_chart(result.tokens, result.scores, selected=sel.prompt.positive + sel.prompt.negative,
                              excluded=sel.prompt.excluded, hidden=hidden, labels=labels,
                              title="Attribution per prompt token")
    ov = session.overrides
    lines = [f"Top-{sel.k}: {len(sel.prompt.positive)} positive, {len(sel.prompt.negative)} negative of "
             f"{sel.eligible} selectable prompt tokens."] + sel.notes
    if any(ov.values()):
        lines.append("Overrides: " + "; ".join(f"{OVERRIDE_NAMES[key]} {', '.join(map(str, v))}"
                                               for key, v in ov.items() if v) + ".")
    return heat, sequences_html(result, sel), chart, " ".join(lines)


def override_texts(session: Session) -> list[str]:
    ov = session.overrides
    return [", ".join(map(str, ov["force_positive"])), ", ".join(map(str, ov["force_negative"])),
            ", ".join(map(str, ov["drop"]))]


def selection_json(session: Session, k: Any = 5, content_only: bool = True, skip_punctuation: bool = False) -> dict:
    sel = current_selection(session, k, content_only, skip_punctuation)
    return {"k": sel.k, "prompt": vars(sel.prompt), "plus": vars(sel.plus), "minus": vars(sel.minus),
            "overrides": session.overrides}


def scores_json(session: Session, k: Any = 5, content_only: bool = True, skip_punctuation: bool = False) -> dict:
    """Everything about the last attribution, JSON-safe."""
    data = session.attribution.to_dict()
    data.pop("offsets", None)
    data["converged"] = session.attribution.converged
    data["prompt_format"] = (session.inputs or {}).get("prompt_format")
    data["selection"] = selection_json(session, k, content_only, skip_punctuation)
    return to_jsonable(data)


STEERED_LABEL = "Attribute with the vector on"
STEERED_INFO = ("also attribute the steered model (the Steer tab's vector, layer and strength) and show its heatmap "
                "beside the unsteered one, with their difference")


def run_steered_attribution(session: Session, layer: Any = None, strength: Any = None,
                            normalize: Any = True) -> tuple[Any, Any, Any]:
    """The session's last example attributed again with the steering hook on: the session's vector at `layer` and
    `strength` (None: the vector's suggestion), with the same IG settings and prompt format.

    Returns (steered AttributionResult, AttributionDifference steered − unsteered, the Steering used). At strength 0
    the model is not steered (the hook would be the identity), so the steered scores are the unsteered ones."""
    from components.steering_panel import require_vector, session_steering
    from grains.attribution import attribute
    from grains.compare_attributions import attribution_difference

    if session.attribution is None or not session.inputs:
        raise InputError("Run an attribution first: the vector-on heatmap re-attributes the same example.")
    vector = require_vector(session)
    lm = session_model(session)
    layer = vector.default_layer if layer is None or layer == "" else layer
    strength = vector.default_strength if strength is None or strength == "" else strength
    steering = session_steering(session, lm, layer, strength, normalize is not False)
    i = session.inputs
    image = open_image(i.get("image"), lm) if lm.is_vlm else None
    steered = attribute(lm, i["prompt"], i["chosen"], i["rejected"], image=image, steps=i["steps"],
                        target=i["target"], baseline=i["baseline"], points=i["points"], tolerance=i["tolerance"],
                        prompt_format=i["prompt_format"], steering=None if steering.is_identity else steering)
    steered.extra["steering"] = steering.to_dict()
    return steered, attribution_difference(session.attribution, steered), steering


def _convergence_cell(result: Any) -> str:
    word = "converged" if result.converged else "not converged"
    return f"{word} (delta {result.relative_delta:.1%} of |f(x) − f(x′)|, {result.abs_relative_delta:.1%} of Σ|scores|)"


def steered_view_html(unsteered: Any, steered: Any, diff: Any, steering: Any) -> str:
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
             f"{steered.points_used or steered.steps}, {steered.seconds:.1f} s")]
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
             f" Largest changes: " + ", ".join(f"{esc(visible(t['token']))} {t['difference']:+.3g}"
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


def visible(token: str) -> str:
    """A token as the heatmap shows it (spaces as ·)."""
    from grains.viz.heatmap import visible_token

    return visible_token(token)


def steered_json(unsteered: Any, steered: Any, diff: Any) -> dict:
    """JSON for /attribute_steered: the difference, both results' scores, margins and convergence."""
    def part(result: Any) -> dict:
        return {"scores": list(result.scores), "f_input": result.f_input, "f_baseline": result.f_baseline,
                "delta": result.delta, "relative_delta": result.relative_delta,
                "abs_relative_delta": result.abs_relative_delta, "converged": result.converged,
                "points_used": result.points_used, "seconds": result.seconds}

    return to_jsonable({**diff.to_dict(), "unsteered": part(unsteered), "steered": part(steered),
                       "prompt_text": unsteered.prompt_text})


@dataclass
class AttributionPanel:
    prompt: gr.Textbox
    chosen: gr.Textbox
    rejected: gr.Textbox
    image: gr.Image
    image_column: gr.Column
    image_examples: gr.Column
    steps: gr.Slider
    target: gr.Radio
    baseline: gr.Radio
    points: gr.Radio
    k: gr.Slider
    content_only: gr.Checkbox
    skip_punctuation: gr.Checkbox
    heatmap: gr.HTML
    summary: gr.HTML
    chart: gr.Plot
    overlay_column: gr.Column
    overlay: gr.Image
    dataset: gr.Dropdown
    run_button: gr.Button
    attribute_event: Any = None
    prompt_format: Any = None  # gr.Dropdown: raw / qa / chat
    model_input: Any = None  # gr.Textbox: the exact text the model saw
    steered_on: Any = None  # gr.Checkbox: attribute with the vector on
    steered_view: Any = None  # gr.HTML: steered beside unsteered, and the difference
    chart_extra: list[Any] = field(default_factory=list)  # [sequences, raw]: cleared with the chart on a new model

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column, self.image_examples, self.dataset, self.heatmap, self.summary,
                self.overlay_column, self.prompt_format, self.model_input, self.steered_view, self.chart,
                *self.chart_extra]

    def connect_steering(self, state: gr.State, layer: Any, strength: Any, normalize: Any) -> None:
        """Wire "attribute with the vector on" to the Steer tab's controls (built after this panel): after each
        attribution, and when the box is ticked, the same example is attributed with the hook on."""

        @guarded
        def steered_ui(session: Session, on: bool, layer_value: Any, strength_value: Any, norm: bool,
                       progress: gr.Progress = gr.Progress()) -> str:
            if not on:
                return ""
            if session.attribution is None:
                return note_html("Press Attribute: the steered heatmap re-attributes the same example.", "info")
            progress(0.1, desc="Integrated gradients with the vector on…")
            try:
                steered, diff, steering = run_steered_attribution(session, layer_value, strength_value, norm)
            except GrainsError as exc:  # no vector, another model's vector, a bad strength: say so in place
                return note_html(f"<b>Cannot attribute with the vector on:</b> {esc(exc)}", "warn")
            return steered_view_html(session.attribution, steered, diff, steering)

        inputs = [state, self.steered_on, layer, strength, normalize]
        self.attribute_event.success(steered_ui, inputs=inputs, outputs=self.steered_view,
                                     concurrency_id=MODEL_QUEUE, api_visibility="private", scroll_to_output=False)
        self.steered_on.input(steered_ui, inputs=inputs, outputs=self.steered_view, concurrency_id=MODEL_QUEUE,
                              api_visibility="private")

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        vlm = bool(lm.is_vlm)
        fresh = session.attribution is None  # a new model: the old heatmap no longer applies
        return [gr.update(visible=vlm), gr.update(visible=vlm),
                gr.update(choices=dataset_choices(vlm, with_upload=False), value=BROWSE_DEFAULT),
                EMPTY_HEATMAP if fresh else gr.update(), "" if fresh else gr.update(),
                gr.update(visible=False) if fresh else gr.update(), prompt_format_update(lm),
                "" if fresh else gr.update(), "" if fresh else gr.update(),
                gr.update(value=None, elem_classes=[]) if fresh else gr.update(),
                *(["", None] if fresh else [gr.update()] * len(self.chart_extra))]  # sequences, raw JSON


def build_attribution_panel(state: gr.State) -> AttributionPanel:
    """The Attribute tab."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            with gr.Row(equal_height=False):
                prompt = gr.Textbox(label="Prompt", lines=3, elem_id="grains-prompt", scale=3,
                                    value=DEFAULT_EXAMPLE["prompt"])
                prompt_format = prompt_format_dropdown("grains-prompt-format")
            model_input = gr.Textbox(label="Model input (the exact text the model saw)", lines=1, max_lines=6,
                                     interactive=False, elem_id="grains-model-input",
                                     placeholder="shown after Attribute")
            chosen = gr.Textbox(label="Chosen answer (preferred, y+)", lines=1, elem_id="grains-chosen",
                                value=DEFAULT_EXAMPLE["chosen"])
            rejected = gr.Textbox(label="Rejected answer (dispreferred, y−)", lines=1, elem_id="grains-rejected",
                                  value=DEFAULT_EXAMPLE["rejected"])
            with gr.Column(visible=False, elem_id="grains-image-column") as image_column:
                image = safe_image(label="Image (vision-language models)", height=240,
                                   sources=["upload", "clipboard"], elem_id="grains-image")
            with gr.Accordion("IG settings", open=False):
                steps = gr.Slider(1, MAX_STEPS_UI, value=DEFAULT_STEPS, step=1, label="IG steps (integration points)",
                                  info="Points of the starting rule. More steps: smaller delta, slower (~linear).")
                tolerance = gr.Slider(0, 20, value=DEFAULT_TOLERANCE * 100, step=1, label="Tolerance (%)",
                                      elem_id="grains-ig-tolerance",
                                      info="Add points until |delta| is within this share of f(x) − f(baseline) "
                                           "(capped at 4x the steps). 0: fixed rule.")
                target = gr.Radio(TARGETS, value="sequence", label="f uses")
                baseline = gr.Radio(BASELINES, value="zero", label="Baseline x′")
                points = gr.Radio(POINTS, value="graded", label="Integration points")
            run_button = gr.Button("Attribute", variant="primary", elem_id="grains-attribute")
            steered_on = gr.Checkbox(value=False, label=STEERED_LABEL, info=STEERED_INFO,
                                     elem_id="grains-attribute-steered")
            texts, text_labels = text_examples()
            gr.Examples(texts, inputs=[prompt, chosen, rejected], label="Examples (click one, then Attribute)",
                        example_labels=text_labels, examples_per_page=6, elem_id="grains-text-examples")
            with gr.Column(visible=False) as image_examples_column:
                photos, photo_labels = image_examples()
                if photos:
                    gr.Examples(photos, inputs=[prompt, chosen, rejected, image], label="Photo examples (VLM)",
                                example_labels=photo_labels, examples_per_page=6, elem_id="grains-image-examples")
            with gr.Accordion("Browse the shipped datasets", open=False):
                dataset = gr.Dropdown(dataset_choices(False, with_upload=False), value=BROWSE_DEFAULT, label="Dataset",
                                      elem_id="grains-browse-dataset")
                with gr.Row():
                    row = gr.Number(value=0, precision=0, minimum=0, label="Row", min_width=80)
                    load_row = gr.Button("Load row", size="sm")
        with gr.Column(scale=3, min_width=420):
            heatmap = gr.HTML(EMPTY_HEATMAP, js_on_load=TOKEN_CLICK_JS, elem_id="grains-heatmap")
            summary = gr.HTML(elem_id="grains-attr-summary")
            steered_view = gr.HTML(elem_id="grains-steered-attribution")
            with gr.Column(visible=False, elem_id="grains-overlay-column") as overlay_column:
                with gr.Row(equal_height=False):
                    overlay = gr.Image(label="Patch attribution over the image", type="pil", interactive=False,
                                       height=OVERLAY_HEIGHT, elem_id="grains-overlay")
                    with gr.Column():
                        image_info = gr.HTML(elem_id="grains-image-share")
                        alpha = gr.Slider(0, 1, value=OVERLAY_ALPHA, step=0.05, label="Overlay opacity")
            with gr.Group(elem_classes=["grains-topk"]):
                gr.Markdown("**Top-k selection** — click a token in the heatmap to cycle it: automatic → forced "
                            "positive → forced negative → dropped → automatic.", elem_classes=["grains-pad"])
                with gr.Row():
                    k = gr.Slider(1, 20, value=5, step=1, label="top-k (per side)", elem_id="grains-k")
                    content_only = gr.Checkbox(value=True, label="Content tokens only",
                                               info="never pick special/template tokens (Q:, A:, <bos>)")
                    skip_punctuation = gr.Checkbox(value=False, label="Skip punctuation")
                    show_template = gr.Checkbox(value=False, label="Show template / system-prompt tokens",
                                                info="a chat template's system prompt is folded into one chip",
                                                elem_id="grains-show-template")
                with gr.Row():
                    force_pos = gr.Textbox(label="Force positive (indices)", placeholder="e.g. 3, 7", max_lines=1)
                    force_neg = gr.Textbox(label="Force negative (indices)", max_lines=1)
                    drop = gr.Textbox(label="Never pick (indices)", max_lines=1)
                with gr.Row():
                    apply_overrides = gr.Button("Apply indices", size="sm", variant="secondary",
                                                elem_classes=["grains-button-secondary"])
                    reset_overrides = gr.Button("Reset to automatic", size="sm", variant="secondary",
                                                elem_classes=["grains-button-secondary"])
                selection_note = gr.HTML(elem_id="grains-selection-note")
            chart = gr.Plot(label="Attribution per prompt token", elem_id="grains-attr-chart")
            with gr.Accordion("What a vector built from this example ablates (s+ and s−)", open=False):
                sequences = gr.HTML(elem_id="grains-sequences")
            with gr.Accordion("Raw scores (JSON)", open=False):
                raw = gr.JSON(label="Attribution result", elem_id="grains-raw")

    panel = AttributionPanel(prompt=prompt, chosen=chosen, rejected=rejected, image=image, image_column=image_column,
                             image_examples=image_examples_column, steps=steps, target=target, baseline=baseline,
                             points=points, k=k, content_only=content_only, skip_punctuation=skip_punctuation,
                             heatmap=heatmap, summary=summary, chart=chart, overlay_column=overlay_column,
                             overlay=overlay, dataset=dataset, run_button=run_button, prompt_format=prompt_format,
                             model_input=model_input, steered_on=steered_on, steered_view=steered_view,
                             chart_extra=[sequences, raw])
    view_outputs = [heatmap, sequences, chart, selection_note, raw, force_pos, force_neg, drop]

    def view(session: Session, k_value: Any, co: bool, sp: bool, st: bool = False) -> list[Any]:
        if session.attribution is None:
            return [EMPTY_HEATMAP, "", None, "", None, "", "", ""]
        heat, seqs, fig, note = render(session, k_value, co, sp, st)
        return [heat, seqs, gr.update(value=fig, elem_classes=[]), esc(note), scores_json(session, k_value, co, sp),
                *override_texts(session)]

    @guarded
    def attribute_ui(session: Session, p: str, c: str, r: str, img: str | None, n_steps: Any, tgt: str, base: str,
                     pts: str, tol: Any, k_value: Any, co: bool, sp: bool, st: bool, opacity: float,
                     fmt: Any = None,
                     progress: gr.Progress = gr.Progress()) -> list[Any]:
        progress(0.1, desc=f"Integrated gradients, {int(n_steps)} points…")
        lm = session_model(session)
        result = run_attribution(session, p, c, r, img if lm.is_vlm else None, n_steps, tgt, base, pts, tol, fmt)
        over = overlay_image(result, session.inputs.get("image"), opacity)
        return [session, summary_html(result), gr.update(visible=over is not None), over, image_html(result),
                *view(session, k_value, co, sp, st), result.prompt_text]

    panel.attribute_event = run_button.click(
        attribute_ui, inputs=[state, prompt, chosen, rejected, image, steps, target, baseline, points, tolerance, k,
                              content_only, skip_punctuation, show_template, alpha, prompt_format],
        outputs=[state, summary, overlay_column, overlay, image_info, *view_outputs, model_input],
        concurrency_id=MODEL_QUEUE, api_visibility="private", scroll_to_output=False, **one_status(summary))

    # Inputs changed after an attribution: the heatmap and chart stay readable but are marked outdated.
    def mark_stale(heat: str) -> list[Any]:
        if not heat or heat == EMPTY_HEATMAP:
            return [gr.update(), gr.update()]
        return [outdated_html(heat, "the example changed"), mark_outdated(True)]

    for control in (prompt, chosen, rejected):
        control.change(mark_stale, inputs=heatmap, outputs=[heatmap, chart], queue=False, api_visibility="private",
                       show_progress="hidden")
    image.change(mark_stale, inputs=heatmap, outputs=[heatmap, chart], queue=False, api_visibility="private",
                 show_progress="hidden", preprocess=False)

    @guarded
    def reselect(session: Session, k_value: Any, co: bool, sp: bool, st: bool) -> list[Any]:
        return view(session, k_value, co, sp, st)

    for control in (k, content_only, skip_punctuation, show_template):
        control.change(reselect, inputs=[state, k, content_only, skip_punctuation, show_template], outputs=view_outputs,
                       api_visibility="private", show_progress="hidden", trigger_mode="always_last")

    @guarded
    def token_clicked(session: Session, k_value: Any, co: bool, sp: bool, st: bool, evt: gr.EventData) -> list[Any]:
        index = (getattr(evt, "_data", None) or {}).get("index")
        if session.attribution is None or index is None:
            return view(session, k_value, co, sp, st)
        index = int(index)
        if not 0 <= index < len(session.attribution.tokens):
            raise InputError(f"Token index {index} is out of range.")
        cycle_override(session.overrides, index)
        return view(session, k_value, co, sp, st)

    heatmap.click(token_clicked, inputs=[state, k, content_only, skip_punctuation, show_template], outputs=view_outputs,
                  api_visibility="private", show_progress="hidden")

    @guarded
    def apply_indices(session: Session, fp: str, fn: str, dr: str, k_value: Any, co: bool, sp: bool,
                      st: bool) -> list[Any]:
        if session.attribution is None:
            raise InputError("Run an attribution first: the indices refer to its prompt tokens.")
        n = len(session.attribution.tokens)
        pos = parse_indices(fp, "Force positive", n)
        neg = parse_indices(fn, "Force negative", n)
        dropped = parse_indices(dr, "Never pick", n)
        clash = (set(pos) & set(neg)) | (set(pos) & set(dropped)) | (set(neg) & set(dropped))
        if clash:
            raise InputError(f"Token {min(clash)} is in two override lists; put each index in one list only.")
        session.overrides = {"force_positive": pos, "force_negative": neg, "drop": dropped}
        return view(session, k_value, co, sp, st)

    apply_overrides.click(apply_indices, inputs=[state, force_pos, force_neg, drop, k, content_only,
                                                 skip_punctuation, show_template], outputs=view_outputs,
                          api_visibility="private")

    @guarded
    def reset(session: Session, k_value: Any, co: bool, sp: bool, st: bool) -> list[Any]:
        session.clear_overrides()
        return view(session, k_value, co, sp, st)

    reset_overrides.click(reset, inputs=[state, k, content_only, skip_punctuation, show_template], outputs=view_outputs,
                          api_visibility="private")

    @guarded
    def redraw_overlay(session: Session, opacity: float) -> Any:
        return overlay_image(session.attribution, session.inputs.get("image"), opacity)

    alpha.release(redraw_overlay, inputs=[state, alpha], outputs=overlay, api_visibility="private",
                  show_progress="hidden")

    @guarded
    def load_dataset_row(name: str, index: Any) -> list[Any]:
        from components.datasets import as_pairs

        kind, rows, _ = load_rows(name, None, 1, whole(index, "Row"))
        ex = as_pairs(kind, rows)[0]
        return [ex.prompt, ex.chosen, ex.rejected, ex.image]

    load_row.click(load_dataset_row, inputs=[dataset, row], outputs=[prompt, chosen, rejected, image],
                   api_visibility="private")

    # API: /attribute (prompt, chosen, rejected, steps, image, target, baseline) -> heatmap HTML, scores JSON, delta
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Textbox(label="chosen"), gr.Textbox(label="rejected"),
                  gr.Number(value=DEFAULT_STEPS, label="steps"), gr.File(type="filepath", label="image"),
                  gr.Textbox(value="sequence", label="target"), gr.Textbox(value="zero", label="baseline"),
                  gr.Textbox(value="", label="prompt_format")]
        api_out = [gr.HTML(label="heatmap"), gr.JSON(label="scores"), gr.Number(label="delta")]

    # Every parameter after `rejected` has a default here as well as in its component (Gradio 6 marks a parameter
    # optional when its component has a value, or when its component's value is None and the function's parameter
    # defaults to None), so the short call /attribute(prompt, chosen, rejected) and keyword calls work.
    def api_attribute(session: Session, prompt: str, chosen: str, rejected: str, steps: Any = DEFAULT_STEPS,
                      image: str | None = None, target: str = "sequence", baseline: str = "zero",
                      prompt_format: str = "") -> tuple[Session, str, dict, float]:
        """Contrastive IG over the prompt tokens; also becomes the session's current example. prompt_format: raw
        (as written), qa (Q: ... A:) or chat ("" = the model's default); scores["prompt_text"] is what the model saw."""
        result = run_attribution(session, prompt, chosen, rejected, image, steps, target or "sequence",
                                 baseline or "zero", prompt_format=prompt_format)
        heat, _, _, _ = render(session, 5, True, False)
        return session, heat, scores_json(session), result.delta

    api_endpoint(api_attribute, [state, *api_in], [state, *api_out], "attribute")

    with gr.Column(visible=False):
        api_st_in = [gr.Number(value=None, label="layer"), gr.Number(value=None, label="strength"),
                     gr.Checkbox(value=True, label="normalize")]
        api_st_out = [gr.HTML(label="heatmaps"), gr.JSON(label="difference")]

    def api_attribute_steered(session: Session, layer: Any = None, strength: Any = None,
                              normalize: bool = True) -> tuple[str, dict]:
        """Re-attribute the session's last /attribute example with its vector on (layer, strength: None = the
        vector's suggestion); returns the steered and unsteered heatmaps with their difference, and the JSON (per-
        token difference steered − unsteered, both scores, margins, deltas and convergence)."""
        steered, diff, steering = run_steered_attribution(session, layer, strength, normalize)
        return (steered_view_html(session.attribution, steered, diff, steering),
                steered_json(session.attribution, steered, diff))

    api_endpoint(api_attribute_steered, [state, *api_st_in], api_st_out, "attribute_steered")

    with gr.Column(visible=False):
        api_sel_in = [gr.Number(value=5, label="k"), gr.Textbox(label="force_positive"),
                      gr.Textbox(label="force_negative"), gr.Textbox(label="drop"),
                      gr.Checkbox(value=True, label="content_only"), gr.Checkbox(value=False, label="skip_punctuation")]
        api_sel_out = [gr.HTML(label="heatmap"), gr.JSON(label="selection")]

    def api_select(session: Session, k: Any, force_positive: str, force_negative: str, drop: str,
                   content_only: bool, skip_punctuation: bool) -> tuple[Session, str, dict]:
        """Top-k selection on the last attribution, with forced/dropped token indices (used by /build_vector)."""
        if session.attribution is None:
            raise InputError("Run /attribute first: the indices refer to its prompt tokens.")
        n = len(session.attribution.tokens)
        session.overrides = {"force_positive": parse_indices(force_positive, "force_positive", n),
                             "force_negative": parse_indices(force_negative, "force_negative", n),
                             "drop": parse_indices(drop, "drop", n)}
        heat, _, _, _ = render(session, k, content_only, skip_punctuation)
        return session, heat, to_jsonable(selection_json(session, k, content_only, skip_punctuation))

    api_endpoint(api_select, [state, *api_sel_in], [state, *api_sel_out], "select_tokens", queue_id=None)
    return panel
