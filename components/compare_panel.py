"""Side by side: unsteered and steered continuations streamed next to each other (one batch, paired sampling), word
differences highlighted, the exact model input shown, and a strength sweep table with each strength's side effect.

The tab has its own controls for the session's vector (layer and strength, kept in step with the Steer tab), stop
sequences (a new "Q:" turn by default), the prompt format (chat for chat models), a flag on degenerate text, and
marks its results "outdated" as soon as an input they depend on changes.

Layout and event wiring only: the work is in components.actions.compare, the HTML in components.views.compare, the
checks in components.inputs and the API endpoints in components.api."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.compare import (
    STOP_FLAGS,
    counted_steps,
    job_key,
    model_input_text,
    remember_generation,
    side_effect_line,
    stream_texts,
    sweep_rows,
    take_generating_count,
)
from components.attribution_panel import AttributionPanel
from components.common import (
    CLAMP_NOTE_JS,
    MODEL_QUEUE,
    SHORT_QUEUE,
    api_endpoint,
    esc,
    guarded,
    note_html,
    one_status,
    prompt_format_dropdown,
    prompt_format_update,
    safe_image,
)
from components.inputs import open_image, parse_stop, session_steering, settings_from, sweep_steerings
from components.model_cache import session_model
from components.queue_bypass import answers_from_memory
from components.session import Session
from components.steering_panel import STRENGTH_HELP, SteeringPanel, slider_updates
from components.views.compare import (
    SWEEP_WAITING,
    WAITING,
    degenerate_note,
    generation_summary,
    outdated_html,
    run_time_text,
    sweep_table_html,
    vector_line,
)
from grains.errors import Cancelled
from grains.side_effects import KL_PROMPT_COUNT
from grains.steering import MAX_STRENGTH
from grains.viz.diff import render_diff

NO_VECTOR_COLUMN = ("this session has no steering vector. Build one or load one in the Steer tab (or choose a demo "
                    "recipe), then Generate again to see the steered continuation beside this one.")

if TYPE_CHECKING:
    from grains.models import LoadedModel

DEFAULT_PROMPT = "For lunch I had a sandwich, and"
MAX_TOKENS_UI = 256
MAX_SWEEP = 8
NEUTRAL_PROMPT_COUNT = KL_PROMPT_COUNT
STOP_HELP = ("one per line; write \\n for a line break (e.g. \\nUser:). A row ends as soon as its continuation "
             "contains one, and the text is cut before it: the same check on both rows.")


@dataclass
class ComparePanel:
    prompt: gr.Textbox
    image: gr.Image
    image_column: gr.Column
    max_new_tokens: gr.Slider
    unsteered: gr.HTML
    steered: gr.HTML
    prompt_format: gr.Dropdown | None = None
    model_input: gr.Textbox | None = None
    layer: gr.Slider | None = None
    strength: gr.Slider | None = None
    stop_qa: gr.Checkbox | None = None
    stop_custom: gr.Textbox | None = None
    status: gr.HTML | None = None
    sweep_table: gr.HTML | None = None
    vector: gr.HTML | None = None
    do_sample: gr.Checkbox | None = None
    seed: gr.Number | None = None
    temperature: gr.Slider | None = None
    top_p: gr.Slider | None = None

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column, self.prompt_format, self.model_input, self.unsteered, self.steered, self.status,
                self.sweep_table, self.layer, self.strength, self.vector]

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        """A (new) model: every result of this tab is cleared (it came from the previous model or session); the
        layer and strength start at the vector's suggestions, as the Steer tab's do (the page opens with them baked
        in, so no change event of the Steer sliders carries them over)."""
        return [gr.update(visible=bool(lm.is_vlm)), prompt_format_update(lm), "", WAITING, WAITING, "",
                SWEEP_WAITING, *slider_updates(session, lm), vector_line(session)]


def build_compare_panel(state: gr.State, attr: AttributionPanel, steer: SteeringPanel) -> ComparePanel:
    """The Compare tab."""
    vector = gr.HTML(elem_id="grains-gen-vector")
    gr.HTML("", js_on_load=CLAMP_NOTE_JS, elem_id="grains-clamp-watch", padding=False)  # "1000 is outside -4 to 4"
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            with gr.Row(equal_height=False):
                prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, elem_id="grains-gen-prompt", scale=3)
                prompt_format = prompt_format_dropdown("grains-gen-prompt-format")
            model_input = gr.Textbox(label="Model input (the exact text the model saw)", lines=1, max_lines=6,
                                     interactive=False, elem_id="grains-gen-model-input",
                                     placeholder="shown after Generate")
            use_attr = gr.Button("Use the Attribute tab's prompt", size="sm")
            with gr.Row():
                layer = gr.Slider(0, 17, value=9, step=1, label="Layer", elem_id="grains-gen-layer",
                                  info="the session's vector is added here")
                strength = gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=0.5, step=0.05, label="Strength λ",
                                     elem_id="grains-gen-strength", info=STRENGTH_HELP)
        with gr.Column(scale=2, min_width=300):
            with gr.Column(visible=False) as image_column:
                image = safe_image(label="Image (VLM)", height=160, sources=["upload", "clipboard"],
                                   elem_id="grains-gen-image")
            with gr.Row():
                max_new_tokens = gr.Slider(1, MAX_TOKENS_UI, value=40, step=1, label="Max new tokens",
                                           elem_id="grains-max-tokens")
                seed = gr.Number(value=0, precision=0, label="Seed", min_width=80)
            with gr.Row():
                do_sample = gr.Checkbox(value=False, label="Sample (else greedy)")
                temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p")
            stop_qa = gr.Checkbox(value=True, label='Stop at a new "Q:" turn', elem_id="grains-gen-stop-qa",
                                  info="a base model answering a Q: … A: prompt tends to run on into new questions")
            stop_custom = gr.Textbox(label="Other stop sequences", lines=1, max_lines=4, elem_id="grains-gen-stop",
                                     placeholder="e.g. \\nUser:", info=STOP_HELP)
    with gr.Row():
        generate = gr.Button("Generate side by side", variant="primary", elem_id="grains-generate")
        stop = gr.Button("Stop", variant="stop", elem_id="grains-stop", scale=0, min_width=110)
    status = gr.HTML(elem_id="grains-gen-status")
    with gr.Row(equal_height=False):
        with gr.Column(elem_classes=["grains-card"]):
            gr.Markdown("#### Unsteered")
            unsteered = gr.HTML(WAITING, elem_id="grains-unsteered")
        with gr.Column(elem_classes=["grains-card"]):
            steered_title = gr.Markdown("#### Steered", elem_id="grains-steered-title")
            steered = gr.HTML(WAITING, elem_id="grains-steered")
    gr.Markdown("Red: words only in the unsteered text · green: words only in the steered text. Both rows are "
                "generated in one batch and, when sampling, share the same random draw at every step, so every "
                "difference comes from the steering vector (at strength 0 the texts are identical). A column whose "
                "text repeats itself (distinct-2 below 0.5, or one 4-word phrase 3 times) is flagged degenerate.",
                elem_classes=["grains-muted"])
    with gr.Accordion("Strength sweep: the same prompt at several strengths", open=False):
        with gr.Row():
            strengths = gr.Textbox("-0.5, 0, 0.1, 0.25, 0.5, 1", label="Strengths (comma-separated)", max_lines=1,
                                   info=f"-{MAX_STRENGTH:g} to {MAX_STRENGTH:g}; {STRENGTH_HELP}",
                                   elem_id="grains-gen-sweep-strengths")
            sweep_button = gr.Button("Run sweep", size="sm", elem_id="grains-gen-sweep")
            sweep_stop = gr.Button("Stop sweep", size="sm", variant="stop", elem_id="grains-gen-sweep-stop")
        sweep_table = gr.HTML(SWEEP_WAITING, elem_id="grains-sweep-table")
        gr.Markdown("Every strength is shown; none is picked as best. Same layer, seed, format and stop sequences "
                    "as above. KL: the side effect, the mean KL divergence of next-token distributions on all "
                    f"{NEUTRAL_PROMPT_COUNT} shipped neutral prompts, unsteered to steered (0 at strength 0; the "
                    "same figure as the vector card and the Evaluate tab give for the same setting). The last "
                    "column says how each text differs from the unsteered one and flags degenerate text.",
                    elem_classes=["grains-muted"])

    panel = ComparePanel(prompt=prompt, image=image, image_column=image_column, max_new_tokens=max_new_tokens,
                         unsteered=unsteered, steered=steered, prompt_format=prompt_format, model_input=model_input,
                         layer=layer, strength=strength, stop_qa=stop_qa, stop_custom=stop_custom, status=status,
                         sweep_table=sweep_table, vector=vector, do_sample=do_sample, seed=seed,
                         temperature=temperature, top_p=top_p)
    use_attr.click(lambda p, img, fmt: (p, img, fmt), inputs=[attr.prompt, attr.image, attr.prompt_format],
                   outputs=[prompt, image, prompt_format], queue=False, api_visibility="private")

    # the layer and strength are the session's steering setting, shared with the Steer tab: the Steer sliders
    # (also set by a build or a load) update these, and moving these moves those (.input: only user moves, no loop)
    steer.layer.change(lambda v: v, inputs=steer.layer, outputs=layer, queue=False, api_visibility="private")
    steer.strength.change(lambda v: v, inputs=steer.strength, outputs=strength, queue=False,
                          api_visibility="private")
    layer.input(lambda v: v, inputs=layer, outputs=steer.layer, queue=False, api_visibility="private")
    strength.input(lambda v: v, inputs=strength, outputs=steer.strength, queue=False, api_visibility="private")
    steer.card.change(vector_line, inputs=state, outputs=vector, queue=False, api_visibility="private")

    # results that depend on an input are marked outdated as soon as it changes
    def mark_all(what: str) -> Any:
        def mark(u: Any, s: Any, st: Any, sw: Any) -> list[Any]:
            return [outdated_html(u, what), outdated_html(s, what), outdated_html(st, what),
                    outdated_html(sw, what)]
        return mark

    watched = [(prompt, "the prompt"), (prompt_format, "the prompt format"), (image, "the image"),
               (max_new_tokens, "max new tokens"), (seed, "the seed"), (do_sample, "sampling"),
               (temperature, "the temperature"), (top_p, "top-p"), (stop_qa, "the stop sequences"),
               (stop_custom, "the stop sequences"), (layer, "the layer"), (strength, "the strength"),
               (steer.normalize, "the keep-the-norm switch"), (steer.card, "the steering vector")]
    for component, what in watched:
        component.change(mark_all(what), inputs=[unsteered, steered, status, sweep_table],
                outputs=[unsteered, steered, status, sweep_table], queue=False, api_visibility="private",
                show_progress="hidden")

    def stopped_note(count: int) -> str:
        return note_html(f"Stopped after {count} token{'s' if count != 1 else ''}: the texts above are what was "
                         "generated before Stop (no side effect was measured). Press Generate to run again.", "warn")

    def unsteered_only(session: Session, p: str, img: str | None, settings: Any, fmt: Any) -> Iterator[list[Any]]:
        lm = session_model(session)
        shown = model_input_text(session, p, open_image(img, lm) if lm.is_vlm else None, fmt)
        title = "#### Steered · no vector in this session"
        right = note_html(NO_VECTOR_COLUMN, "info")
        start, count, u = time.perf_counter(), 0, ""
        stream = stream_texts(session, p, img, None, settings, fmt)
        for count, u, _ in counted_steps(session, stream):
            status = note_html(f"Generating… {count} tokens (unsteered only)", "info")
            yield [render_diff(u, u)[0], right, title, status, shown]
        if stream.stopped:  # Stop has written the status; the run's last message must say the same
            yield [render_diff(u, u)[0], right, title, stopped_note(count), shown]
            return
        tokens, cached = stream.tokens(count)
        how = run_time_text(tokens, time.perf_counter() - start, cached)
        yield [degenerate_note(u) + render_diff(u, u)[0], right, title,
               note_html(f"{how}, unsteered only: {NO_VECTOR_COLUMN}", "warn"), shown]

    @answers_from_memory
    @guarded
    def generate_ui(session: Session, p: str, img: str | None, layer: Any, strength: Any, norm: bool, n: Any,
                    sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None, stop_qa: bool = True,
                    stop_custom: str = "") -> Any:
        settings = settings_from(n, sample, temp, tp, sd, parse_stop(stop_qa, stop_custom))
        lm = session_model(session)
        if session.vector is None:  # nothing to steer with: the unsteered continuation alone, and why
            yield from unsteered_only(session, p, img, settings, fmt)
            return
        steering = session_steering(session, lm, layer, strength, norm)  # checked before anything runs
        shown = model_input_text(session, p, open_image(img, lm) if lm.is_vlm else None, fmt)
        title = f"#### Steered · {steering.describe()}"
        start = time.perf_counter()
        u = s = ""
        count = 0
        stream = stream_texts(session, p, img, steering, settings, fmt)
        for count, u, s in counted_steps(session, stream):
            left, right = render_diff(u, s)
            yield [left, right, title, note_html(f"Generating… {count} tokens", "info"), shown]
        if stream.stopped:  # Stop has written the status; the run's last message (Gradio sends it again) says the same
            yield [*render_diff(u, s), title, stopped_note(count), shown]
            return
        seconds = time.perf_counter() - start
        left, right = render_diff(u, s)
        left, right = degenerate_note(u) + left, degenerate_note(s, unsteered=u) + right
        remember_generation(session, p, steering, settings, fmt)
        tokens, cached = stream.tokens(count)
        done = generation_summary(tokens, seconds, settings, u == s, cached)
        yield [left, right, title, note_html(f"{done} Measuring the side effect on neutral prompts…", "info"), shown]
        line = side_effect_line(lm, steering, fmt)
        kind = "warn" if "over the budget" in line else "ok"  # the greedy texts are done either way
        yield [left, right, title, note_html(f"{done} {esc(line)}", kind), shown]

    generate.click(
        generate_ui, inputs=[state, prompt, image, layer, strength, steer.normalize, max_new_tokens,
                             do_sample, temperature, top_p, seed, prompt_format, stop_qa, stop_custom],
        outputs=[unsteered, steered, steered_title, status, model_input], concurrency_id=SHORT_QUEUE,
        api_visibility="private", **one_status(status))

    def stopped(session: Session) -> Any:
        """The status after Stop, from the run's own state: how far it got, or unchanged when it had finished. The
        run ends itself at its next step and sends the same status last (a queued run: "Cancel my waiting jobs")."""
        count = take_generating_count(session)
        return gr.update() if count is None else stopped_note(count)

    stop.click(stopped, inputs=state, outputs=status, queue=False, api_visibility="private")

    @guarded
    def sweep_ui(session: Session, p: str, img: str | None, layer: Any, values: str, norm: bool, n: Any,
                 sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None, stop_qa: bool = True,
                 stop_custom: str = "", progress: gr.Progress = gr.Progress()) -> Any:
        settings = settings_from(n, sample, temp, tp, sd, parse_stop(stop_qa, stop_custom))
        steerings = sweep_steerings(session, session_model(session), layer, values, norm, MAX_SWEEP)
        STOP_FLAGS[job_key(session)] = False
        rows: list[list[Any]] = []
        total = len(steerings)
        try:
            for rows in sweep_rows(session, p, img, steerings, settings, progress=progress, prompt_format=fmt,
                                   should_stop=lambda: STOP_FLAGS.get(job_key(session), False)):
                if len(rows) < total:  # each row as it finishes, with what is still to come
                    yield sweep_table_html(rows, waiting=[s.strength for s in steerings][len(rows):])
        except Cancelled as exc:
            kept = f" The {len(rows)} row{'s' if len(rows) != 1 else ''} done before Stop are kept below." if rows \
                else " No row had finished."
            yield note_html(esc(str(exc)) + kept, "warn") + (sweep_table_html(rows) if rows else "")
            return
        finally:
            STOP_FLAGS.pop(job_key(session), None)
        yield sweep_table_html(rows)

    sweep_button.click(
        sweep_ui, inputs=[state, prompt, image, layer, strengths, steer.normalize, max_new_tokens, do_sample,
                          temperature, top_p, seed, prompt_format, stop_qa, stop_custom],
        outputs=sweep_table, concurrency_id=MODEL_QUEUE, api_visibility="private")
    strengths.input(lambda sw: outdated_html(sw, "the strengths"), inputs=sweep_table, outputs=sweep_table,
                    queue=False, api_visibility="private", show_progress="hidden")

    def request_stop(session: Session) -> None:
        if job_key(session) in STOP_FLAGS:
            STOP_FLAGS[job_key(session)] = True  # checked before each generation; the hook is never left on

    sweep_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")

    # API: /generate, /strength_sweep (hidden components give each endpoint its signature)
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"), gr.Number(value=0.5, label="strength"),
                  gr.Number(value=40, label="max_new_tokens"), safe_image(label="image"),
                  gr.Checkbox(value=False, label="do_sample"), gr.Number(value=1.0, label="temperature"),
                  gr.Number(value=1.0, label="top_p"), gr.Number(value=0, label="seed"),
                  gr.Checkbox(value=True, label="normalize"), gr.Textbox(value="", label="prompt_format"),
                  gr.Textbox(value="", label="stop")]
        api_out = [gr.Textbox(label="unsteered"), gr.Textbox(label="steered")]
    api_endpoint(api.generate, [state, *api_in], api_out, "generate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"),
                     gr.Textbox(value="0, 0.5, 1", label="strengths"), gr.Number(value=40, label="max_new_tokens"),
                     safe_image(label="image"), gr.Checkbox(value=True, label="normalize"),
                     gr.Textbox(value="", label="prompt_format"), gr.Textbox(value="", label="stop")]
        api_sw_out = gr.JSON(label="rows")
    api_endpoint(api.strength_sweep, [state, *api_sw_in], [api_sw_out], "strength_sweep")
    return panel
