"""Side by side: unsteered and steered continuations streamed next to each other (same seed, one batch), word
differences highlighted, and a strength sweep table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.app_state import Session, clean_json, parse_numbers
from components.attribution_panel import AttributionPanel, open_image, whole
from components.common import MODEL_QUEUE, api_endpoint, guarded, note_html, session_model
from components.steering_panel import SteeringPanel
from components.token_heatmap import render_diff
from grains.errors import InputError

DEFAULT_PROMPT = "Q: What happens if you crack your knuckles a lot?\nA:"
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


def require_vector(session: Session) -> Any:
    if session.vector is None:
        raise InputError("This session has no steering vector: build one or load one in the Steer tab first.")
    return session.vector


def check_layer(layer: Any, lm: Any) -> int:
    from grains.steering import check_layers

    return check_layers(whole(layer, "The layer"), lm.num_layers)[0]


def stream_texts(session: Session, prompt: str, image_path: str | None, layer: Any, strength: Any, normalize: bool,
                 settings: Any) -> Any:
    """Yield (unsteered, steered) so far."""
    from grains.generation import stream_pair
    from grains.steering import check_strength

    lm = session_model(session)
    vector = require_vector(session)
    layer_i, value = check_layer(layer, lm), check_strength(strength)
    image = open_image(image_path, lm) if lm.is_vlm else None
    yield from stream_pair(lm, prompt, vector, layer_i, value, settings, image=image, normalize=bool(normalize))


def generate_texts(session: Session, prompt: str, image_path: str | None, layer: Any, strength: Any,
                   normalize: bool, settings: Any) -> tuple[str, str]:
    from grains.generation import generate_pair
    from grains.steering import check_strength

    lm = session_model(session)
    vector = require_vector(session)
    layer_i, value = check_layer(layer, lm), check_strength(strength)
    pair = generate_pair(lm, prompt, vector, layer_i, value, settings, image=open_image(image_path, lm),
                         normalize=bool(normalize))
    session.last_generation = {"prompt": prompt, "layer": layer_i, "strength": value,
                               "max_new_tokens": settings.max_new_tokens}
    return pair.unsteered, pair.steered


def strength_sweep(session: Session, prompt: str, image_path: str | None, layer: Any, strengths: str,
                   normalize: bool, settings: Any, progress: Any = None) -> list[list[Any]]:
    """One steered continuation per strength (strength 0 = unsteered), same seed."""
    from grains.generation import generate_one
    from grains.steering import check_strength

    lm = session_model(session)
    vector = require_vector(session)
    values = [check_strength(s) for s in parse_numbers(strengths, "Strengths")]
    if len(values) > MAX_SWEEP:
        raise InputError(f"Give at most {MAX_SWEEP} strengths.")
    layer_i = check_layer(layer, lm)
    image = open_image(image_path, lm) if lm.is_vlm else None
    table = []
    base = None
    for i, value in enumerate(values):
        if progress:
            progress(i / len(values), desc=f"strength {value:g}")
        text = generate_one(lm, prompt, vector if value > 0 else None, layer_i, value, settings, image=image,
                            normalize=bool(normalize))
        if value == 0:
            base = text
        table.append([value, text])
    if base is not None:
        table = [[s, t, "" if s == 0 else ("same as unsteered" if t == base else "changed")] for s, t in table]
    else:
        table = [[s, t, ""] for s, t in table]
    return table


@dataclass
class ComparePanel:
    prompt: gr.Textbox
    image: gr.Image
    image_column: gr.Column
    max_new_tokens: gr.Slider
    unsteered: gr.HTML
    steered: gr.HTML

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.image_column]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        return [gr.update(visible=bool(lm.is_vlm))]


def build_compare_panel(state: gr.State, attr: AttributionPanel, steer: SteeringPanel) -> ComparePanel:
    """The Compare tab."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=3, elem_id="grains-gen-prompt")
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
                "generated in one batch with the same seed, so every difference comes from the steering vector.",
                elem_classes=["grains-muted"])
    with gr.Accordion("Strength sweep: the same prompt at several strengths", open=False):
        with gr.Row():
            strengths = gr.Textbox("0, 0.1, 0.25, 0.5, 1", label="Strengths (comma-separated)", max_lines=1)
            sweep_button = gr.Button("Run sweep", size="sm")
        sweep_table = gr.Dataframe(headers=["strength", "continuation", "vs unsteered"], interactive=False,
                                   wrap=True, elem_id="grains-sweep-table")

    panel = ComparePanel(prompt=prompt, image=image, image_column=image_column, max_new_tokens=max_new_tokens,
                         unsteered=unsteered, steered=steered)
    use_attr.click(lambda p, img: (p, img), inputs=[attr.prompt, attr.image], outputs=[prompt, image], queue=False,
                   api_visibility="private")

    @guarded
    def generate_ui(session: Session, p: str, img: str | None, layer: Any, strength: Any, norm: bool, n: Any,
                    sample: bool, temp: Any, tp: Any, sd: Any) -> Any:
        settings = settings_from(n, sample, temp, tp, sd)
        title = f"#### Steered · layer {int(layer)}, λ = {float(strength):g}{'' if norm else ', no norm rescale'}"
        start = time.perf_counter()
        u = s = ""
        count = 0
        for u, s in stream_texts(session, p, img, layer, strength, norm, settings):
            count += 1
            left, right = render_diff(u, s)
            yield [left, right, title, note_html(f"Generating… {count} tokens", "info")]
        seconds = time.perf_counter() - start
        left, right = render_diff(u, s)
        session.last_generation = {"prompt": p, "layer": int(layer), "strength": float(strength),
                                   "max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                                   "seed": settings.seed, "normalize": bool(norm)}
        same = "The two continuations are identical." if u == s else "Differences are highlighted."
        yield [left, right, title, note_html(f"{count} tokens in {seconds:.1f} s (both rows in one batch, "
                                             f"seed {settings.seed}). {same}", "ok")]

    gen_event = generate.click(
        generate_ui, inputs=[state, prompt, image, steer.layer, steer.strength, steer.normalize, max_new_tokens,
                             do_sample, temperature, top_p, seed],
        outputs=[unsteered, steered, steered_title, status], concurrency_id=MODEL_QUEUE, api_visibility="private")
    stop.click(None, cancels=[gen_event], queue=False)

    @guarded
    def sweep_ui(session: Session, p: str, img: str | None, layer: Any, values: str, norm: bool, n: Any,
                 sample: bool, temp: Any, tp: Any, sd: Any, progress: gr.Progress = gr.Progress()) -> Any:
        settings = settings_from(n, sample, temp, tp, sd)
        return strength_sweep(session, p, img, layer, values, norm, settings, progress=progress)

    sweep_button.click(sweep_ui, inputs=[state, prompt, image, steer.layer, strengths, steer.normalize,
                                         max_new_tokens, do_sample, temperature, top_p, seed],
                       outputs=sweep_table, concurrency_id=MODEL_QUEUE, api_visibility="private")

    # API: /generate (prompt, layer, strength, max_new_tokens, image, ...) -> unsteered text, steered text
    with gr.Column(visible=False):
        api_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"), gr.Number(value=0.5, label="strength"),
                  gr.Number(value=40, label="max_new_tokens"), gr.Image(type="filepath", label="image"),
                  gr.Checkbox(value=False, label="do_sample"), gr.Number(value=1.0, label="temperature"),
                  gr.Number(value=1.0, label="top_p"), gr.Number(value=0, label="seed"),
                  gr.Checkbox(value=True, label="normalize")]
        api_out = [gr.Textbox(label="unsteered"), gr.Textbox(label="steered")]

    def api_generate(session: Session, prompt: str, layer: Any, strength: Any, max_new_tokens: Any, image: str | None,
                     do_sample: bool, temperature: Any, top_p: Any, seed: Any, normalize: bool) -> tuple[str, str]:
        """Unsteered and steered continuations (one batch, same seed) with this session's vector."""
        settings = settings_from(max_new_tokens, do_sample, temperature, top_p, seed)
        return generate_texts(session, prompt, image, layer, strength, normalize, settings)

    api_endpoint(api_generate, [state, *api_in], api_out, "generate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(label="prompt"), gr.Number(value=0, label="layer"),
                     gr.Textbox(value="0, 0.5, 1", label="strengths"), gr.Number(value=40, label="max_new_tokens"),
                     gr.Image(type="filepath", label="image")]
        api_sw_out = gr.JSON(label="rows")

    def api_sweep(session: Session, prompt: str, layer: Any, strengths: str, max_new_tokens: Any,
                  image: str | None) -> list:
        """Greedy continuations at several strengths: [[strength, text, vs unsteered], ...]."""
        settings = settings_from(max_new_tokens, False, 1, 1, 0)
        return clean_json(strength_sweep(session, prompt, image, layer, strengths, True, settings))

    api_endpoint(api_sweep, [state, *api_sw_in], [api_sw_out], "strength_sweep")
    return panel

