"""Attribution view: prompt, chosen, rejected (+ image for a VLM) -> contrastive IG heatmap, bar chart, patch overlay,
f(chosen) - f(rejected) and the convergence check; top-k selection with click-to-toggle tokens.

Layout and event wiring only: the work is in components.actions.attribution, the HTML in
components.views.attribution, the checks in components.inputs and the API endpoints in components.api."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.attribution import (
    current_selection,
    dataset_row,
    overlay_image,
    override_texts,
    run_attribution,
    run_steered_attribution,
    scores_json,
)
from components.common import (
    OVERLAY_ALPHA,
    OVERLAY_HEIGHT,
    SHORT_QUEUE,
    api_endpoint,
    esc,
    guarded,
    mark_outdated,
    note_html,
    one_status,
    outdated_html,
    prompt_format_dropdown,
    prompt_format_update,
    safe_image,
)
from components.datasets import dataset_choices, image_examples, text_examples
from components.inputs import cycle_override, parse_overrides, require_attribution, steering_or_suggestion
from components.model_cache import session_model
from components.queue_bypass import answers_from_memory
from components.session import DEFAULT_EXAMPLE, Session
from components.views.attribution import EMPTY_HEATMAP, image_html, render, steered_view_html, summary_html
from grains.attribution import CAP_PER_STEP, DEFAULT_STEPS, DEFAULT_TOLERANCE
from grains.errors import GrainsError, InputError

if TYPE_CHECKING:
    from grains.models import LoadedModel

MAX_STEPS_UI = 64
# Clicking a token sends its index to Python (gr.HTML's trigger); the heatmap HTML itself carries no script.
TOKEN_CLICK_JS = """
element.addEventListener('click', (event) => {
  const tok = event.target.closest('.grains-tok');
  if (tok && element.contains(tok)) { trigger('click', {index: Number(tok.dataset.index)}); }
});
"""
TARGETS = [("whole response: log P(answer | prompt)", "sequence"), ("last response token (paper's scripts)", "last")]
BASELINES = [("zero embeddings (BOS/template kept)", "zero"), ("pad-token embeddings", "pad")]
BROWSE_DEFAULT = "sentiment_pairs"  # the dataset of the default example
POINTS = [("graded: log-spaced near the baseline + Gauss-Legendre", "graded"), ("Gauss-Legendre", "gauss-legendre"),
          ("midpoint Riemann", "midpoint")]
STEERED_LABEL = "Attribute with the vector on"
STEERED_INFO = ("also attribute the steered model (the Steer tab's vector, layer and strength) and show its heatmap "
                "beside the unsteered one, with their difference")
NEEDS_ATTRIBUTION = "Run an attribution first: the vector-on heatmap re-attributes the same example."


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
    prompt_format: gr.Dropdown | None = None  # raw / qa / chat
    model_input: gr.Textbox | None = None  # the exact text the model saw
    steered_on: gr.Checkbox | None = None  # attribute with the vector on
    steered_view: gr.HTML | None = None  # steered beside unsteered, and the difference
    chart_extra: list[Any] = field(default_factory=list)  # [sequences, raw, top-k line]: cleared on a new model

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column, self.image_examples, self.dataset, self.heatmap, self.summary,
                self.overlay_column, self.prompt_format, self.model_input, self.steered_view, self.chart,
                *self.chart_extra]

    def connect_steering(self, state: gr.State, layer: Any, strength: Any, normalize: Any) -> None:
        """Wire "attribute with the vector on" to the Steer tab's controls (built after this panel): after each
        attribution, and when the box is ticked, the same example is attributed with the hook on."""

        @answers_from_memory
        @guarded
        def steered_ui(session: Session, on: bool, layer_value: Any, strength_value: Any, norm: bool,
                       progress: gr.Progress = gr.Progress()) -> str:
            if not on:
                return ""
            if session.attribution is None:
                return note_html("Press Attribute: the steered heatmap re-attributes the same example.", "info")
            progress(0.1, desc="Integrated gradients with the vector on…")
            try:
                require_attribution(session, NEEDS_ATTRIBUTION)
                steering = steering_or_suggestion(session, session_model(session), layer_value, strength_value, norm)
                steered, diff = run_steered_attribution(session, steering)
            except GrainsError as exc:  # no vector, another model's vector, a bad strength: say so in place
                return note_html(f"<b>Cannot attribute with the vector on:</b> {esc(exc)}", "warn")
            return steered_view_html(session.attribution, steered, diff, steering)

        inputs = [state, self.steered_on, layer, strength, normalize]
        self.attribute_event.success(steered_ui, inputs=inputs, outputs=self.steered_view,
                                     concurrency_id=SHORT_QUEUE, api_visibility="private", scroll_to_output=False)
        self.steered_on.input(steered_ui, inputs=inputs, outputs=self.steered_view, concurrency_id=SHORT_QUEUE,
                              api_visibility="private")

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        vlm = bool(lm.is_vlm)
        fresh = session.attribution is None  # a new model: the old heatmap no longer applies
        return [gr.update(visible=vlm), gr.update(visible=vlm),
                gr.update(choices=dataset_choices(vlm, with_upload=False), value=BROWSE_DEFAULT),
                EMPTY_HEATMAP if fresh else gr.update(), "" if fresh else gr.update(),
                gr.update(visible=False) if fresh else gr.update(), prompt_format_update(lm),
                "" if fresh else gr.update(), "" if fresh else gr.update(),
                gr.update(value=None, elem_classes=[]) if fresh else gr.update(),
                *(["", None, ""] if fresh else [gr.update()] * len(self.chart_extra))]  # sequences, raw, top-k line


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
                                           f"(capped at {CAP_PER_STEP}x the steps). 0: fixed rule.")
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
                             chart_extra=[sequences, raw, selection_note])
    view_outputs = [heatmap, sequences, chart, selection_note, raw, force_pos, force_neg, drop]

    def view(session: Session, k_value: Any, co: bool, sp: bool, st: bool = False) -> list[Any]:
        if session.attribution is None:
            return [EMPTY_HEATMAP, "", None, "", None, "", "", ""]
        sel = current_selection(session, k_value, co, sp)
        heat, seqs, fig, note = render(session.attribution, session.example, sel, session.overrides, st)
        return [heat, seqs, gr.update(value=fig, elem_classes=[]), esc(note), scores_json(session, k_value, co, sp),
                *override_texts(session)]

    @answers_from_memory
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
        concurrency_id=SHORT_QUEUE, api_visibility="private", scroll_to_output=False, **one_status(summary))

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
                       api_visibility="private", trigger_mode="always_last", **one_status(selection_note, "hidden"))

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
                  api_visibility="private", **one_status(selection_note, "hidden"))

    @guarded
    def apply_indices(session: Session, fp: str, fn: str, dr: str, k_value: Any, co: bool, sp: bool,
                      st: bool) -> list[Any]:
        if session.attribution is None:
            raise InputError("Run an attribution first: the indices refer to its prompt tokens.")
        session.overrides = parse_overrides(fp, fn, dr, len(session.attribution.tokens),
                                            ("Force positive", "Force negative", "Never pick"))
        return view(session, k_value, co, sp, st)

    apply_overrides.click(apply_indices, inputs=[state, force_pos, force_neg, drop, k, content_only,
                                                 skip_punctuation, show_template], outputs=view_outputs,
                          api_visibility="private", **one_status(selection_note, "minimal"))

    @guarded
    def reset(session: Session, k_value: Any, co: bool, sp: bool, st: bool) -> list[Any]:
        session.clear_overrides()
        return view(session, k_value, co, sp, st)

    reset_overrides.click(reset, inputs=[state, k, content_only, skip_punctuation, show_template], outputs=view_outputs,
                          api_visibility="private", **one_status(selection_note, "minimal"))

    @guarded
    def redraw_overlay(session: Session, opacity: float) -> Any:
        return overlay_image(session.attribution, session.inputs.get("image"), opacity)

    alpha.release(redraw_overlay, inputs=[state, alpha], outputs=overlay, api_visibility="private",
                  show_progress="hidden")

    load_row.click(guarded(dataset_row), inputs=[dataset, row], outputs=[prompt, chosen, rejected, image],
                   api_visibility="private", **one_status(selection_note, "minimal"))

    # API: /attribute, /attribute_steered, /select_tokens (hidden components give each endpoint its signature)
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Textbox(label="chosen"), gr.Textbox(label="rejected"),
                  gr.Number(value=DEFAULT_STEPS, label="steps"), gr.File(type="filepath", label="image"),
                  gr.Textbox(value="sequence", label="target"), gr.Textbox(value="zero", label="baseline"),
                  gr.Textbox(value="", label="prompt_format")]
        api_out = [gr.HTML(label="heatmap"), gr.JSON(label="scores"), gr.Number(label="delta")]
    api_endpoint(api.attribute, [state, *api_in], [state, *api_out], "attribute")

    with gr.Column(visible=False):
        api_st_in = [gr.Number(value=None, label="layer"), gr.Number(value=None, label="strength"),
                     gr.Checkbox(value=True, label="normalize")]
        api_st_out = [gr.HTML(label="heatmaps"), gr.JSON(label="difference")]
    api_endpoint(api.attribute_steered, [state, *api_st_in], api_st_out, "attribute_steered")

    with gr.Column(visible=False):
        api_sel_in = [gr.Number(value=5, label="k"), gr.Textbox(label="force_positive"),
                      gr.Textbox(label="force_negative"), gr.Textbox(label="drop"),
                      gr.Checkbox(value=True, label="content_only"), gr.Checkbox(value=False, label="skip_punctuation")]
        api_sel_out = [gr.HTML(label="heatmap"), gr.JSON(label="selection")]
    api_endpoint(api.select_tokens, [state, *api_sel_in], [state, *api_sel_out], "select_tokens", queue_id=None)
    return panel
