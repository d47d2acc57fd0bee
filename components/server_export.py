"""Steer tab, "Use it in a server": download the session's vector as a GGUF control vector for llama.cpp or
EasySteer (vLLM), copy the llama.cpp command and the EasySteer request, and read how much the engines' missing norm
rescale changes the model (measured). Layout and wiring only: the work is in components.actions.server_export."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from components import api
from components.actions.server_export import export_for_server
from components.common import MODEL_QUEUE, api_endpoint, esc, guarded, note_html, one_status
from components.session import Session

INTRO = ("The file holds one unit of Studio strength per layer (the layer's median hidden-state norm times the "
         "direction), so the engines' scale is the strength on the slider. llama.cpp cannot steer layer 0.")


def server_export_outputs(done: dict[str, Any], path: str) -> list[Any]:
    """What the accordion shows after an export: the note (file, layers, scale, the rescale warning), the file, the
    llama.cpp command lines and the EasySteer request body.

    Args:
        done: the export's JSON (components.actions.server_export.export_for_server).
        path: the .gguf file.

    Returns:
        [note HTML, file path, commands text, request JSON text].
    """
    warning = note_html(f"Rescale: {esc(done['warning'])}", "warn")
    note = note_html(f"Wrote {esc(done['file_name'])}: layers {esc(done['layers'])}, scale {esc(done['strength'])} "
                     "(= the Studio strength).", "ok")
    return [note + warning, path, "\n".join(done["llama_cpp"].values()),
            json.dumps(done["easysteer_request"], indent=2)]


def build_server_export(state: gr.State, layer: gr.Slider, strength: gr.Slider) -> None:
    """The "Use it in a server" accordion, steered by the Steer tab's layer and strength sliders, and the
    /export_gguf API endpoint.

    Args:
        state: the session state.
        layer: the Steer tab's layer slider.
        strength: the Steer tab's strength slider.
    """
    with gr.Accordion("Use it in a server (llama.cpp, EasySteer / vLLM)", open=False, elem_id="grains-server-export"):
        gr.Markdown(INTRO)
        export = gr.Button("Export GGUF control vector", size="sm", variant="secondary",
                           elem_id="grains-export-gguf", elem_classes=["grains-button-secondary"])
        note = gr.HTML(elem_id="grains-server-note")
        file = gr.File(label="GGUF control vector", interactive=False, elem_id="grains-gguf-file")
        llama = gr.Code(label="llama.cpp (replace MODEL.gguf with the model's GGUF)", language="shell",
                        interactive=False, elem_id="grains-llama-command")
        easysteer = gr.Code(label="EasySteer request body (POST /v1/completions; `steering` goes in extra_body)",
                            language="json", interactive=False, elem_id="grains-easysteer-request")

    @guarded
    def export_ui(session: Session, at_layer: Any, at_strength: Any) -> list[Any]:
        return server_export_outputs(*export_for_server(session, at_layer, at_strength))

    export.click(export_ui, inputs=[state, layer, strength], outputs=[note, file, llama, easysteer],
                 concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(note))

    with gr.Column(visible=False):
        api_in = [gr.Number(value=9, label="layer"), gr.Number(value=0.5, label="strength")]
        api_out = [gr.JSON(label="export"), gr.File(label="gguf")]
    api_endpoint(api.export_gguf, [state, *api_in], api_out, "export_gguf")
