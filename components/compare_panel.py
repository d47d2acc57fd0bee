"""Side by side: unsteered and steered continuations streamed next to each other (one batch, paired sampling), word
differences highlighted, the exact model input shown, and a strength sweep table with each strength's side effect."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.app_state import Session, clean_json, parse_numbers
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
from components.token_heatmap import render_diff
from grains.errors import InputError
from grains.side_effects import SELECTION_PROMPTS

DEFAULT_PROMPT = "For lunch I had a sandwich, and"
MAX_TOKENS_UI = 256
MAX_SWEEP = 8
WAITING = '<div class="grains-placeholder">Press Generate.</div>'


def settings_from(max_new_tokens: Any, do_sample: bool, temperature: Any, top_p: Any, seed: Any) -> Any:
    from grains.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=whole(max_new_tokens, "max_new_tokens"), do_sample=bool(do_sample),
                                  temperature=float(temperature if temperature is not None else 1.0),
                                  top_p=float(top_p if top_p is not None else 1.0), seed=whole(seed or 0, "Seed"))
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
                               "prompt_format": chosen_format(prompt_format)}
    return pair


def strength_sweep(session: Session, prompt: str, image_path: str | None, layer: Any, strengths: str,
                   normalize: bool, settings: Any, progress: Any = None, prompt_format: Any = None,
                   kl: bool = True) -> list[list[Any]]:
    """One steered continuation per strength (strength 0 = unsteered), same seed, each with its mean KL on neutral
    prompts (its side effect). No row is named best: the rows are for reading side by side."""
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
    for i, (value, steering) in enumerate(zip(values, settings_list)):
        if progress:
            progress(i / len(values), desc=f"strength {value:g}")
        text = generate_one(lm, prompt, None if steering.is_identity else steering, settings=settings, image=image)
        if value == 0:
            base = text
        kl_value = (0.0 if steering.is_identity else round(meter.mean(steering), 4)) if meter is not None else None
        table.append([value, text, kl_value])
    rows = []
    for value, text, kl_value in table:
        versus = "" if base is None or value == 0 else ("same as unsteered" if text == base else "changed")
        rows.append([value, text, versus, kl_value])
    return rows


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

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column, self.prompt_format, self.model_input]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        return [gr.update(visible=bool(lm.is_vlm)), prompt_format_update(lm), ""]


def build_compare_panel(state: gr.State, attr: AttributionPanel, steer: SteeringPanel) -> ComparePanel:
    """The Compare tab."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            with gr.Row(equal_height=False):
                prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, elem_id="grains-gen-prompt", scale=3)
                prompt_format = prompt_format_dropdown("grains-gen-prompt-format")
            model_input = gr.Textbox(label="Model input (the exact text the model saw)", lines=1, max_lines=6,
                                     interactive=False, elem_id="grains-gen-model-input",
                                     placeholder="shown after Generate")
            use_attr = gr.Button("Use the Attribute tab's prompt", size="sm")
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
                "difference comes from the steering vector (at strength 0 the texts are identical).",
                elem_classes=["grains-muted"])
    with gr.Accordion("Strength sweep: the same prompt at several strengths", open=False):
        with gr.Row():
            strengths = gr.Textbox("-0.5, 0, 0.1, 0.25, 0.5, 1", label="Strengths (comma-separated)", max_lines=1,
                                   info=f"-4 to 4; {STRENGTH_HELP}", elem_id="grains-gen-sweep-strengths")
            sweep_button = gr.Button("Run sweep", size="sm")
        sweep_table = gr.Dataframe(headers=SWEEP_TABLE_HEADERS, interactive=False, wrap=True,
                                   elem_id="grains-sweep-table")
        gr.Markdown("Every strength is shown; none is picked as best. The last column is the side effect: the mean "
                    f"KL divergence of next-token distributions on the first {SELECTION_PROMPTS} neutral prompts, "
                    "unsteered to steered (0 at strength 0; the Evaluate tab measures on all of them).",
                    elem_classes=["grains-muted"])

    panel = ComparePanel(prompt=prompt, image=image, image_column=image_column, max_new_tokens=max_new_tokens,
                         unsteered=unsteered, steered=steered, prompt_format=prompt_format, model_input=model_input)
    use_attr.click(lambda p, img, fmt: (p, img, fmt), inputs=[attr.prompt, attr.image, attr.prompt_format],
                   outputs=[prompt, image, prompt_format], queue=False, api_visibility="private")

    @guarded
    def generate_ui(session: Session, p: str, img: str | None, layer: Any, strength: Any, norm: bool, n: Any,
                    sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None) -> Any:
        settings = settings_from(n, sample, temp, tp, sd)
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
        session.last_generation = {"prompt": p, "layer": steering.layers[0], "strength": steering.strength,
                                   "max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                                   "seed": settings.seed, "normalize": steering.normalize,
                                   "prompt_format": chosen_format(fmt)}
        same = "The two continuations are identical." if u == s else "Differences are highlighted."
        paired = "same random draw per step" if settings.do_sample else "greedy"
        done = f"{count} tokens in {seconds:.1f} s (both rows in one batch, {paired}, seed {settings.seed}). {same}"
        yield [left, right, title, note_html(f"{done} Measuring the side effect on neutral prompts…", "info"), shown]
        line = side_effect_line(lm, steering, fmt)
        kind = "warn" if "over the budget" in line else "ok"  # the greedy texts are done either way
        yield [left, right, title, note_html(f"{done} {esc(line)}", kind), shown]

    gen_event = generate.click(
        generate_ui, inputs=[state, prompt, image, steer.layer, steer.strength, steer.normalize, max_new_tokens,
                             do_sample, temperature, top_p, seed, prompt_format],
        outputs=[unsteered, steered, steered_title, status, model_input], concurrency_id=MODEL_QUEUE,
        api_visibility="private")
    stop.click(None, cancels=[gen_event], queue=False)

    @guarded
    def sweep_ui(session: Session, p: str, img: str | None, layer: Any, values: str, norm: bool, n: Any,
                 sample: bool, temp: Any, tp: Any, sd: Any, fmt: Any = None,
                 progress: gr.Progress = gr.Progress()) -> Any:
        settings = settings_from(n, sample, temp, tp, sd)
        return strength_sweep(session, p, img, layer, values, norm, settings, progress=progress, prompt_format=fmt)

    sweep_button.click(sweep_ui, inputs=[state, prompt, image, steer.layer, strengths, steer.normalize,
                                         max_new_tokens, do_sample, temperature, top_p, seed, prompt_format],
                       outputs=sweep_table, concurrency_id=MODEL_QUEUE, api_visibility="private")

    # API: /generate (prompt, layer, strength, max_new_tokens, image, ...) -> unsteered text, steered text
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"), gr.Number(value=0.5, label="strength"),
                  gr.Number(value=40, label="max_new_tokens"), gr.Image(type="filepath", label="image"),
                  gr.Checkbox(value=False, label="do_sample"), gr.Number(value=1.0, label="temperature"),
                  gr.Number(value=1.0, label="top_p"), gr.Number(value=0, label="seed"),
                  gr.Checkbox(value=True, label="normalize"), gr.Textbox(value="", label="prompt_format")]
        api_out = [gr.Textbox(label="unsteered"), gr.Textbox(label="steered")]

    def api_generate(session: Session, prompt: str, layer: Any = 0, strength: Any = 0.5, max_new_tokens: Any = 40,
                     image: str | None = None, do_sample: bool = False, temperature: Any = 1.0, top_p: Any = 1.0,
                     seed: Any = 0, normalize: bool = True, prompt_format: str = "") -> tuple[str, str]:
        """Unsteered and steered continuations (one batch, paired sampling) with this session's vector; strength
        -4..4 (negative steers toward the rejected answers); prompt_format raw/qa/chat ("" = the model's)."""
        settings = settings_from(max_new_tokens, do_sample, temperature, top_p, seed)
        pair = generate_texts(session, prompt, image, layer, strength, normalize is not False, settings,
                              prompt_format)
        return pair.unsteered, pair.steered

    api_endpoint(api_generate, [state, *api_in], api_out, "generate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"),
                     gr.Textbox(value="0, 0.5, 1", label="strengths"), gr.Number(value=40, label="max_new_tokens"),
                     gr.Image(type="filepath", label="image"), gr.Checkbox(value=True, label="normalize"),
                     gr.Textbox(value="", label="prompt_format")]
        api_sw_out = gr.JSON(label="rows")

    def api_sweep(session: Session, prompt: str, layer: Any = 0, strengths: str = "0, 0.5, 1", max_new_tokens: Any = 40,
                  image: str | None = None, normalize: bool = True, prompt_format: str = "") -> list:
        """Greedy continuations at several strengths: [[strength, text, vs unsteered, mean KL on neutral prompts
        (nats)], ...]; no row is named best."""
        settings = settings_from(max_new_tokens, False, 1, 1, 0)
        return clean_json(strength_sweep(session, prompt, image, layer, strengths, normalize is not False, settings,
                                         prompt_format=prompt_format))

    api_endpoint(api_sweep, [state, *api_sw_in], [api_sw_out], "strength_sweep")
    return panel

