"""Model panel: pick a preset (or type a hub id / local path), load it into the shared cache, show what it is.

Layout, wiring and the model card; switching models is components.actions.model, the endpoint components.api."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.model import resolve_name, switch_model
from components.common import (
    MODEL_QUEUE,
    PROMPT_FORMAT_SHORT,
    api_endpoint,
    esc,
    guarded,
    note_html,
    one_status,
    warn,
)
from components.model_cache import MODELS, session_model
from components.session import Session
from grains.errors import GrainsError
from grains.presets import PRESETS, is_installed

if TYPE_CHECKING:
    from grains.models import LoadedModel

GROUP_LABELS = {"embedded": "embedded", "extra": "extra", "test": "random weights"}


def preset_model_name(name: str) -> str:
    """The model a preset really loads, from its description ("Qwen2.5-Coder-0.5B-Instruct (optional; ...)" ->
    "Qwen2.5-Coder-0.5B-Instruct"); the preset name itself when the description is not about a named model."""
    preset = PRESETS.get(name)
    if preset is None:
        return name
    real = preset.description.split(" (", 1)[0].strip()
    return real or name


def preset_label(name: str) -> str:
    """Dropdown label: the preset name, the model it really loads when the name does not say it (the
    "qwen2.5-0.5b-instruct" preset is Qwen2.5-Coder-0.5B-Instruct), and its group; extras say when they are not
    installed."""
    preset = PRESETS[name]
    real = preset_model_name(name)
    label = GROUP_LABELS.get(preset.group, preset.group)
    if preset.group == "embedded":
        label += ", default"
    if preset.vlm:
        label += ", VLM"
    if preset.group == "extra" and not is_installed(name):
        label += ", not installed"
    if preset.group != "test" and real.lower() != name.lower():
        return f"{name}  ·  {real}  ·  {label}"
    return f"{name}  ·  {label}"


def preset_choices() -> list[tuple[str, str]]:
    order = {"embedded": 0, "extra": 1, "test": 2}
    names = sorted(PRESETS, key=lambda n: (order.get(PRESETS[n].group, 3), n))
    return [(preset_label(n), n) for n in names]


def preset_note(name: str | None) -> str:
    """A line about the chosen preset: description, install hint when missing, random-weights warning."""
    if not name or name not in PRESETS:
        return ""
    preset = PRESETS[name]
    text = esc(preset.description)
    if preset.group == "extra" and not is_installed(name):
        return note_html(f"{text}. Not installed here: run <code>{esc(preset.install_hint)}</code>, then load.",
                         "warn")
    return f'<div class="grains-muted">{text}</div>'


def format_parameters(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f} B"
    if count >= 1e6:
        return f"{count / 1e6:.1f} M"
    return f"{count / 1e3:.1f} k"


def model_card(lm: LoadedModel) -> str:
    """HTML summary of a loaded model."""
    info = lm.info()
    kind = "vision-language model (VLM)" if info["kind"] == "VLM" else "language model (LLM)"
    real = preset_model_name(info["model_id"]) if info["model_id"] in PRESETS else info["model_id"]
    shown = info["model_id"] if real.lower() == str(info["model_id"]).lower() or info.get("random_weights") else (
        f"{real} (preset {info['model_id']})")
    facts = [
        ("Model", shown), ("Type", kind), ("Architecture", info["architecture"]),
        ("Parameters", format_parameters(info["parameters"])), ("Layers", str(info["layers"])),
        ("Hidden size", str(info["hidden_size"])), ("Device", info["device"]), ("Dtype", info["dtype"]),
        ("Prompt format", PROMPT_FORMAT_SHORT.get(str(info.get("prompt_format")), str(info.get("prompt_format")))),
    ]
    cells = "".join(f'<div class="grains-fact"><span>{esc(k)}</span><b>{esc(v)}</b></div>' for k, v in facts)
    html = f'<div class="grains-facts">{cells}</div>'
    if info["random_weights"]:
        html += note_html("<b>Random weights:</b> a tiny test model. Its generations, heatmaps and vectors are "
                          "meaningless; use it to try the interface quickly.", "warn")
    html += "".join(f'<div class="grains-muted">{esc(note)}</div>' for note in info.get("notes", []))
    others = [n for n in MODELS.loaded() if n != info["model_id"]]
    if others:
        html += f'<div class="grains-muted">Also loaded (shared by all users): {esc(", ".join(others))}</div>'
    return html


@dataclass
class ModelPanel:
    preset: gr.Dropdown
    custom: gr.Textbox
    load_button: gr.Button
    card: gr.HTML
    preset_info: gr.HTML
    load_event: Any = None

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        """Updates after a page load or model change (outputs: preset, card)."""
        value = session.model_name if session.model_name in PRESETS else None
        return [gr.update(choices=preset_choices(), value=value), model_card(lm)]  # labels: installed as of now

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.preset, self.card]

    def current_card(self, session: Session) -> str:
        """The card as of now, for each page load: the models loaded beside this one change while the app runs (the
        rest of the page's first state is baked in, components/initial_values.py)."""
        return model_card(session_model(session))


def build_model_panel(state: gr.State, default_model: str) -> ModelPanel:
    """The model bar; `load_event` is the load click, to chain panel refreshes after it."""
    with gr.Row(equal_height=False, elem_id="grains-model-bar", elem_classes=["grains-card"]):
        with gr.Column(scale=4, min_width=340):
            preset = gr.Dropdown(preset_choices(), value=default_model if default_model in PRESETS else None,
                                 label="Model preset", elem_id="grains-preset", interactive=True)
            with gr.Row(equal_height=False):
                custom = gr.Textbox(label="…or a hub id / local path / .gguf file", scale=3, min_width=260,
                                    placeholder="owner/name or ./path",
                                    elem_id="grains-custom-model", max_lines=1)
                load_button = gr.Button("Load model", variant="primary", elem_id="grains-load-model", scale=0,
                                        min_width=130)
            preset_info = gr.HTML(preset_note(default_model), elem_id="grains-preset-info")
        with gr.Column(scale=7, min_width=320):
            card = gr.HTML(elem_id="grains-model-card", label="Loaded model")

    panel = ModelPanel(preset=preset, custom=custom, load_button=load_button, card=card, preset_info=preset_info)

    preset.change(preset_note, inputs=preset, outputs=preset_info, api_visibility="private", queue=False)
    # an optional model installed while the app runs: the labels ("not installed") are recomputed when the list opens
    preset.focus(lambda: gr.update(choices=preset_choices()), outputs=preset, api_visibility="private",
                 queue=False, show_progress="hidden")

    @guarded
    def load(session: Session, preset_name: str | None, custom_name: str | None,
             progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Session, str, str]:
        name = resolve_name(preset_name, custom_name)
        progress(0.05, desc=f"Loading {name} (the first load of a model can take a while)…")
        try:
            lm = switch_model(session, name)
        except GrainsError as exc:  # keep the previous model; say why, here and in a toast
            warn(str(exc))
            kept = esc(session.model_name)
            return session, gr.update(), note_html(f"<b>Could not load {esc(name)}:</b> {esc(exc)} Still using "
                                                   f"{kept}.", "error")
        return session, model_card(lm), preset_note(name if name in PRESETS else None)

    panel.load_event = load_button.click(load, inputs=[state, preset, custom], outputs=[state, card, preset_info],
                                         concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(card))

    # API: /load_model (the hidden components give the endpoint its signature)
    with gr.Column(visible=False):
        api_name_in = gr.Textbox(label="name")
        api_info_out = gr.JSON(label="model info")
    api_endpoint(api.load_model, [state, api_name_in], [state, api_info_out], "load_model")
    return panel
