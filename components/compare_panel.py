"""Side by side: unsteered and steered continuations streamed next to each other (one batch, paired sampling), word
differences highlighted, the exact model input shown, and a strength sweep table with each strength's side effect.

The tab has its own controls for the session's vector (layer and strength, kept in step with the Steer tab), stop
sequences (a new "Q:" turn by default), the prompt format (chat for chat models), a flag on degenerate text, and
marks its results "outdated" as soon as an input they depend on changes."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.app_state import Session, parse_numbers
from components.attribution_panel import AttributionPanel, open_image, whole
from components.common import (
    MODEL_QUEUE,
    api_endpoint,
    chosen_format,
    esc,
    guarded,
    note_html,
    prompt_format_dropdown,
    prompt_format_update,
    session_model,
)
from components.steering_panel import STRENGTH_HELP, SteeringPanel, session_steering
from grains.errors import Cancelled, InputError
from grains.fluency import degeneracy
from grains.generation import QA_STOP
from grains.serialize import to_jsonable
from grains.side_effects import SELECTION_PROMPTS
from grains.steering import MAX_STRENGTH
from grains.viz.diff import render_diff

DEFAULT_PROMPT = "For lunch I had a sandwich, and"
MAX_TOKENS_UI = 256
MAX_SWEEP = 8
WAITING = '<div class="grains-placeholder">Press Generate.</div>'
SWEEP_WAITING = '<div class="grains-placeholder">Press Run sweep.</div>'
OUTDATED_MARK = '<div class="grains-outdated">'
STOP_HELP = ("one per line; write \\n for a line break (e.g. \\nUser:). A row ends as soon as its continuation "
             "contains one, and the text is cut before it: the same check on both rows.")


def outdated_html(value: Any, what: str = "an input") -> Any:
    """`value` (HTML on screen) marked as outdated: a warning on top and the old content faded below. Placeholders,
    empty values and already-marked values are left as they are (returns gr.update() then)."""
    text = str(value or "")
    if not text or "grains-placeholder" in text or text.startswith(OUTDATED_MARK):
        return gr.update()
    # its own class, not grains-note-warn: a finished run's warnings and this mark stay apart
    banner = (f'<div class="grains-note grains-outdated-note" style="background:#fef3c7;border:1px solid #f59e0b;'
              f'color:#78350f;padding:6px 10px;border-radius:6px;margin-bottom:6px;"><b>Outdated:</b> {esc(what)} '
              "changed since this was computed. Run it again for current results.</div>")
    return (OUTDATED_MARK + banner
            + f'<div class="grains-outdated-body" style="opacity:0.45">{text}</div></div>')


def parse_stop(stop_qa: Any, custom: Any) -> tuple[str, ...]:
    """The stop sequences: a new "Q:" turn when `stop_qa`, plus one per non-empty line of `custom` (the two
    characters \\n stand for a line break; other text is taken as written)."""
    out: list[str] = [QA_STOP] if stop_qa else []
    for line in str(custom or "").splitlines():
        if line.strip():
            value = line.replace("\\n", "\n")
            if value not in out:
                out.append(value)
    return tuple(out)


def degenerate_note(text: str) -> str:
    """A visible warning for a degenerate continuation (grains.fluency.degeneracy), or ""."""
    reason = degeneracy(text)
    if not reason:
        return ""
    return note_html(f"<b>Degenerate output</b> ({esc(reason)}): steering this hard breaks the text; read it as a "
                     "side effect, not an answer.", "warn")


def change_summary(text: str, base: str | None) -> str:
    """What changed against the unsteered text: same, or where it first differs and how much differs."""
    if base is None:
        return ""
    if text == base:
        return "same as unsteered"
    a, b = base.split(), text.split()
    shared = 0
    for x, y in zip(a, b):
        if x != y:
            break
        shared += 1
    ratio = difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()
    return f"differs from unsteered after {shared} shared word{'s' if shared != 1 else ''} ({1 - ratio:.0%} different)"


def settings_from(max_new_tokens: Any, do_sample: bool, temperature: Any, top_p: Any, seed: Any,
                  stop: tuple[str, ...] = ()) -> Any:
    from grains.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=whole(max_new_tokens, "max_new_tokens"), do_sample=bool(do_sample),
                                  temperature=float(temperature if temperature is not None else 1.0),
                                  top_p=float(top_p if top_p is not None else 1.0), seed=whole(seed or 0, "Seed"),
                                  stop=tuple(stop))
    settings.check()
    return settings


def model_input_text(session: Session, prompt: str, image: Any, prompt_format: Any) -> str:
    """The exact text the model sees for `prompt` in `prompt_format` (None: the model's default)."""
    lm = session_model(session).with_format(chosen_format(prompt_format))
    return lm.encode_prompt(prompt, image=image).text


def stream_texts(session: Session, prompt: str, image_path: str | None, layer: Any, strength: Any, normalize: bool,
                 settings: Any, prompt_format: Any = None) -> Any:
    """Yield (unsteered, steered) so far."""
    from grains.generation import stream_pair

    lm = session_model(session)
    steering = session_steering(session, lm, layer, strength, normalize)
    image = open_image(image_path, lm) if lm.is_vlm else None
    yield from stream_pair(lm, prompt, steering, settings=settings, image=image,
                           prompt_format=chosen_format(prompt_format))


def generate_texts(session: Session, prompt: str, image_path: str | None, layer: Any, strength: Any,
                   normalize: bool, settings: Any, prompt_format: Any = None) -> Any:
    """Both continuations in one batch (paired sampling); returns the library's PairedGeneration."""
    from grains.generation import generate_pair

    lm = session_model(session)
    steering = session_steering(session, lm, layer, strength, normalize)
    pair = generate_pair(lm, prompt, steering, settings=settings, image=open_image(image_path, lm),
                         prompt_format=chosen_format(prompt_format))
    session.last_generation = {"prompt": prompt, "layer": steering.layers[0], "strength": steering.strength,
                               "max_new_tokens": settings.max_new_tokens, "normalize": steering.normalize,
                               "do_sample": settings.do_sample, "seed": settings.seed,
                               "temperature": settings.temperature, "top_p": settings.top_p,
                               "stop": list(settings.stop), "prompt_format": chosen_format(prompt_format)}
    return pair


def strength_sweep(session: Session, prompt: str, image_path: str | None, layer: Any, strengths: str,
                   normalize: bool, settings: Any, progress: Any = None, prompt_format: Any = None,
                   kl: bool = True, should_stop: Any = None) -> list[list[Any]]:
    """One steered continuation per strength (strength 0 = unsteered), same seed and stop sequences, each with its
    mean KL on neutral prompts (its side effect) and what changed against the unsteered text (generated once more
    when 0 is not in the list), degenerate text flagged. No row is named best: the rows are for reading side by
    side. Rows: [strength, text, what changed, KL]."""
    from grains.generation import generate_one
    lm = session_model(session).with_format(chosen_format(prompt_format))
    values = parse_numbers(strengths, "Strengths")
    if len(values) > MAX_SWEEP:
        raise InputError(f"Give at most {MAX_SWEEP} strengths.")
    settings_list = [session_steering(session, lm, layer, value, normalize) for value in values]  # all checked first
    image = open_image(image_path, lm) if lm.is_vlm else None
    meter = quick_kl(lm) if kl else None
    table = []
    base = None
    total = len(values) + (0 if 0 in values else 1)
    start = time.perf_counter()

    def tick(done: int, what: str) -> None:
        if progress:
            progress(done / total, desc=f"{what} · {done}/{total} done{eta_text(start, done, total)}")

    if 0 not in values:
        tick(0, "unsteered (for comparison)")
        base = generate_one(lm, prompt, None, settings=settings, image=image)
    for i, (value, steering) in enumerate(zip(values, settings_list)):
        done = i + (0 if 0 in values else 1)
        tick(done, f"strength {value:g}")
        if should_stop is not None and should_stop():
            raise Cancelled(f"Sweep stopped by the user after {done} of {total} generations.")
        text = generate_one(lm, prompt, None if steering.is_identity else steering, settings=settings, image=image)
        if value == 0:
            base = text
        kl_value = (0.0 if steering.is_identity else round(meter.mean(steering), 4)) if meter is not None else None
        table.append([value, text, kl_value])
    rows = []
    for value, text, kl_value in table:
        versus = "unsteered" if value == 0 else change_summary(text, base)
        reason = degeneracy(text)
        if reason:
            versus = f"{versus}; DEGENERATE ({reason})"
        rows.append([value, text, versus, kl_value])
    return rows


def eta_text(start: float, done: int, total: int) -> str:
    """", 12 s elapsed, about 30 s left" from the mean time per finished unit ("" before the first one)."""
    elapsed = time.perf_counter() - start
    if done <= 0:
        return f", {elapsed:.0f} s elapsed"
    left = elapsed / done * (total - done)
    return f", {elapsed:.0f} s elapsed, about {left:.0f} s left"


def sweep_table_html(rows: list[list[Any]]) -> str:
    """The sweep as an HTML table: fixed column widths (the header never wraps), long words broken inside their
    cell, degenerate rows marked."""
    cell = "padding:4px 8px;vertical-align:top;border-bottom:1px solid #e5e7eb;"
    wrap = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;"
    head = "".join(f'<th style="{cell}white-space:nowrap;text-align:left;">{esc(h)}</th>' for h in SWEEP_HTML_HEADERS)
    body = []
    for value, text, versus, kl_value in rows:
        flag = "DEGENERATE" in str(versus)
        style = "background:#fef3c7;" if flag else ""
        kl_text = "" if kl_value is None else f"{float(kl_value):.4f}"
        body.append(f'<tr class="{"grains-degenerate" if flag else ""}" style="{style}">'
                    f'<td style="{cell}white-space:nowrap;text-align:right;">{float(value):g}</td>'
                    f'<td style="{cell}{wrap}">{esc(text)}</td>'
                    f'<td style="{cell}white-space:nowrap;text-align:right;">{kl_text}</td>'
                    f'<td style="{cell}{wrap}">{"⚠ " if flag else ""}{esc(versus)}</td></tr>')
    colgroup = ('<colgroup><col style="width:80px"><col><col style="width:110px"><col style="width:28%"></colgroup>')
    return (f'<div class="grains-sweep-table" style="max-width:100%;overflow-x:hidden;">'
            f'<table style="width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.92em;">{colgroup}'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def quick_kl(lm: Any) -> Any:
    """KL on the first neutral prompts (as many as the build's budget check uses), for the quick views on this tab;
    the Evaluate tab measures on all of them."""
    from grains.side_effects import NeutralKL, load_neutral_prompts

    return NeutralKL(lm, load_neutral_prompts(limit=SELECTION_PROMPTS))


def side_effect_line(lm: Any, steering: Any, prompt_format: Any = None) -> str:
    """One line: the setting's mean KL on the neutral prompts (0 exactly at strength 0), against the budget."""
    from grains.side_effects import DEFAULT_KL_BUDGET

    if steering.is_identity:
        return "At strength 0 the model is not steered: no side effect (KL 0)."
    meter = quick_kl(lm.with_format(chosen_format(prompt_format)))
    kl = meter.mean(steering)
    over = "over" if kl > DEFAULT_KL_BUDGET else "within"
    return (f"Side effect of this setting: mean KL {kl:.3f} nats on {len(meter.prompts)} neutral prompts "
            f"({over} the budget of {DEFAULT_KL_BUDGET:g}).")


SWEEP_TABLE_HEADERS = ["strength", "continuation", "vs unsteered", "KL on neutral prompts (nats)"]
SWEEP_HTML_HEADERS = ["strength", "continuation", "KL (nats)", "what changed"]


STOP_FLAGS: dict[int, bool] = {}  # id(session) -> stop requested for this session's running strength sweep


def vector_line(session: Session) -> str:
    """Which vector this tab steers with: the session's (its layer and strength are the sliders below)."""
    if session.vector is None:
        return note_html("No steering vector in this session: build or load one on the Steer tab.", "warn")
    v = session.vector
    suggested = ""
    if getattr(v, "default_layer", None) is not None and getattr(v, "default_strength", None) is not None:
        suggested = f" (suggested: layer {v.default_layer}, strength {float(v.default_strength):g})"
    return note_html(f"Steering with the session's vector <b>{esc(session.vector_label)}</b>{esc(suggested)}. The "
                     "layer and strength below are the session's setting, the same as on the Steer tab: changing "
                     "them here changes them there.", "info")


@dataclass
class ComparePanel:
    prompt: gr.Textbox
    image: gr.Image
    image_column: gr.Column
    max_new_tokens: gr.Slider
    unsteered: gr.HTML
    steered: gr.HTML
    prompt_format: Any = None
    model_input: Any = None
    layer: Any = None
    strength: Any = None
    stop_qa: Any = None
    stop_custom: Any = None
    status: Any = None
    sweep_table: Any = None
    vector: Any = None
    do_sample: Any = None
    seed: Any = None
    temperature: Any = None
    top_p: Any = None

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column, self.prompt_format, self.model_input, self.unsteered, self.steered, self.status,
                self.sweep_table, self.layer, self.vector]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        """A (new) model: every result of this tab is cleared (it came from the previous model or session)."""
        v = session.vector
        layer = v.default_layer if v is not None and v.default_layer is not None else lm.num_layers // 2
        layer = min(max(int(layer), 0), lm.num_layers - 1)
        return [gr.update(visible=bool(lm.is_vlm)), prompt_format_update(lm), "", WAITING, WAITING, "",
                SWEEP_WAITING, gr.update(maximum=lm.num_layers - 1, value=layer), vector_line(session)]


def build_compare_panel(state: gr.State, attr: AttributionPanel, steer: SteeringPanel) -> ComparePanel:
    """The Compare tab."""
    vector = gr.HTML(elem_id="grains-gen-vector")
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
                image = gr.Image(label="Image (VLM)", type="filepath", height=160, sources=["upload", "clipboard"],
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
            steered_title = gr.Markdown("#### Steered")
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
                    "as above. KL: the side effect, the mean KL divergence of next-token distributions on the first "
                    f"{SELECTION_PROMPTS} neutral prompts, unsteered to steered (0 at strength 0; the Evaluate tab "
                    "measures on all of them). The last column says how each text differs from the unsteered one and "
                    "flags degenerate text.", elem_classes=["grains-muted"])

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

    @guarded
    def generate_ui(session: Session, p: str, img: str | None, layer: Any, strength: Any, norm: bool, n: Any,
                    sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None, stop_qa: bool = True,
                    stop_custom: str = "") -> Any:
        settings = settings_from(n, sample, temp, tp, sd, parse_stop(stop_qa, stop_custom))
        lm = session_model(session)
        steering = session_steering(session, lm, layer, strength, norm)  # checked before anything runs
        shown = model_input_text(session, p, open_image(img, lm) if lm.is_vlm else None, fmt)
        title = f"#### Steered · {steering.describe()}"
        start = time.perf_counter()
        u = s = ""
        count = 0
        for u, s in stream_texts(session, p, img, layer, strength, norm, settings, fmt):
            count += 1
            left, right = render_diff(u, s)
            yield [left, right, title, note_html(f"Generating… {count} tokens", "info"), shown]
        seconds = time.perf_counter() - start
        left, right = render_diff(u, s)
        left, right = degenerate_note(u) + left, degenerate_note(s) + right
        session.last_generation = {"prompt": p, "layer": steering.layers[0], "strength": steering.strength,
                                   "max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                                   "seed": settings.seed, "temperature": settings.temperature,
                                   "top_p": settings.top_p, "normalize": steering.normalize,
                                   "stop": list(settings.stop), "prompt_format": chosen_format(fmt)}
        same = "The two continuations are identical." if u == s else "Differences are highlighted."
        paired = "same random draw per step" if settings.do_sample else "greedy"
        stops = (" Stop sequences: " + ", ".join(repr(x) for x in settings.stop) + " (each row ends before one)."
                 if settings.stop else "")
        done = (f"{count} tokens in {seconds:.1f} s (both rows in one batch, {paired}, seed {settings.seed}). "
                f"{same}{esc(stops)}")
        yield [left, right, title, note_html(f"{done} Measuring the side effect on neutral prompts…", "info"), shown]
        line = side_effect_line(lm, steering, fmt)
        kind = "warn" if "over the budget" in line else "ok"  # the greedy texts are done either way
        yield [left, right, title, note_html(f"{done} {esc(line)}", kind), shown]

    gen_event = generate.click(
        generate_ui, inputs=[state, prompt, image, layer, strength, steer.normalize, max_new_tokens,
                             do_sample, temperature, top_p, seed, prompt_format, stop_qa, stop_custom],
        outputs=[unsteered, steered, steered_title, status, model_input], concurrency_id=MODEL_QUEUE,
        api_visibility="private")
    stop.click(None, cancels=[gen_event], queue=False)

    @guarded
    def sweep_ui(session: Session, p: str, img: str | None, layer: Any, values: str, norm: bool, n: Any,
                 sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None, stop_qa: bool = True,
                 stop_custom: str = "", progress: gr.Progress = gr.Progress()) -> Any:
        settings = settings_from(n, sample, temp, tp, sd, parse_stop(stop_qa, stop_custom))
        STOP_FLAGS[id(session)] = False
        try:
            rows = strength_sweep(session, p, img, layer, values, norm, settings, progress=progress,
                                  prompt_format=fmt, should_stop=lambda: STOP_FLAGS.get(id(session), False))
        except Cancelled as exc:
            return note_html(esc(str(exc)) + " Nothing was kept; run the sweep again.", "warn")
        finally:
            STOP_FLAGS.pop(id(session), None)
        return sweep_table_html(rows)

    sweep_button.click(
        sweep_ui, inputs=[state, prompt, image, layer, strengths, steer.normalize, max_new_tokens, do_sample,
                          temperature, top_p, seed, prompt_format, stop_qa, stop_custom],
        outputs=sweep_table, concurrency_id=MODEL_QUEUE, api_visibility="private")
    strengths.input(lambda sw: outdated_html(sw, "the strengths"), inputs=sweep_table, outputs=sweep_table,
                    queue=False, api_visibility="private", show_progress="hidden")

    def request_stop(session: Session) -> None:
        if id(session) in STOP_FLAGS:
            STOP_FLAGS[id(session)] = True  # checked before each generation; the hook is never left on

    sweep_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")

    # API: /generate (prompt, layer, strength, max_new_tokens, image, ...) -> unsteered text, steered text
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"), gr.Number(value=0.5, label="strength"),
                  gr.Number(value=40, label="max_new_tokens"), gr.Image(type="filepath", label="image"),
                  gr.Checkbox(value=False, label="do_sample"), gr.Number(value=1.0, label="temperature"),
                  gr.Number(value=1.0, label="top_p"), gr.Number(value=0, label="seed"),
                  gr.Checkbox(value=True, label="normalize"), gr.Textbox(value="", label="prompt_format"),
                  gr.Textbox(value="", label="stop")]
        api_out = [gr.Textbox(label="unsteered"), gr.Textbox(label="steered")]

    def api_generate(session: Session, prompt: str, layer: Any = 0, strength: Any = 0.5, max_new_tokens: Any = 40,
                     image: str | None = None, do_sample: bool = False, temperature: Any = 1.0, top_p: Any = 1.0,
                     seed: Any = 0, normalize: bool = True, prompt_format: str = "", stop: str = "") -> tuple[str, str]:
        """Unsteered and steered continuations (one batch, paired sampling) with this session's vector; strength
        -4..4 (negative steers toward the rejected answers); prompt_format raw/qa/chat ("" = the model's); stop:
        stop sequences, one per line (\\n written as two characters is a line break), each row cut before one."""
        settings = settings_from(max_new_tokens, do_sample, temperature, top_p, seed, parse_stop(False, stop))
        pair = generate_texts(session, prompt, image, layer, strength, normalize is not False, settings,
                              prompt_format)
        return pair.unsteered, pair.steered

    api_endpoint(api_generate, [state, *api_in], api_out, "generate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"),
                     gr.Textbox(value="0, 0.5, 1", label="strengths"), gr.Number(value=40, label="max_new_tokens"),
                     gr.Image(type="filepath", label="image"), gr.Checkbox(value=True, label="normalize"),
                     gr.Textbox(value="", label="prompt_format"), gr.Textbox(value="", label="stop")]
        api_sw_out = gr.JSON(label="rows")

    def api_sweep(session: Session, prompt: str, layer: Any = 0, strengths: str = "0, 0.5, 1", max_new_tokens: Any = 40,
                  image: str | None = None, normalize: bool = True, prompt_format: str = "", stop: str = "") -> list:
        """Greedy continuations at several strengths: [[strength, text, what changed against unsteered (with a
        DEGENERATE flag), mean KL on neutral prompts (nats)], ...]; no row is named best; stop as in /generate."""
        settings = settings_from(max_new_tokens, False, 1, 1, 0, parse_stop(False, stop))
        return to_jsonable(strength_sweep(session, prompt, image, layer, strengths, normalize is not False, settings,
                                         prompt_format=prompt_format))

    api_endpoint(api_sweep, [state, *api_sw_in], [api_sw_out], "strength_sweep")
    return panel
