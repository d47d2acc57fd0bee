"""Hallucination check view (VLMs): a photo, objects in it and not in it (or proposed in a POPE setting), the model's
yes/no answers with POPE metrics, one probe's patch heatmap, and a vector built from shipped or own probes with a
held-out re-check. Every computation is a call into `grains.vlm.check` (through components.actions.hallucination);
this module only lays out and wires, the HTML is in components.views.hallucination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.hallucination import (
    MAX_HEATMAP_STEPS,
    new_scene,
    new_scene_api,
    probe_heatmap,
    probe_heatmap_api,
    propose,
    run_check,
    run_recheck,
    shipped_labels,
    shipped_photos,
)
from components.actions.steering import request_stop
from components.common import (
    MODEL_QUEUE,
    OVERLAY_ALPHA,
    OVERLAY_HEIGHT,
    SHORT_QUEUE,
    api_endpoint,
    esc,
    gradio_progress,
    guarded,
    note_html,
    one_status,
    safe_image,
)
from components.session import Session
from components.steering_panel import STRENGTH_INFO, wire_stop_watch
from components.views.hallucination import (
    EMPTY,
    HEADERS,
    probe_choices,
    probe_note,
    scene_note_html,
    split_html,
    stale_updates,
    summary_html,
    table_rows,
)
from grains.attribution import DEFAULT_STEPS
from grains.errors import Cancelled
from grains.steering import MAX_STRENGTH

if TYPE_CHECKING:
    from grains.models import LoadedModel

SETTINGS = [("random", "random"), ("popular (most frequent objects)", "popular"),
            ("adversarial (objects often seen with the present ones)", "adversarial")]
SOURCES = [("the shipped probes (other photos)", "shipped"), ("my probes: some build, the rest are checked", "user"),
           ("no build: the loaded vector (e.g. the recipe's shipped one)", "vector")]
NO_VLM = ("The hallucination check asks a vision-language model about a photo. Load a VLM in the model bar (e.g. "
          "tiny-random-llava to try the flow, or a real checkpoint such as HuggingFaceTB/SmolVLM-256M-Instruct).")


@dataclass
class HallucinationPanel:
    main: gr.Column
    no_vlm: gr.HTML
    model_note: gr.HTML
    last: gr.State
    summary: gr.HTML
    table: gr.Dataframe
    probe: gr.Radio
    heatmap: gr.Image
    layer: gr.Slider

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.main, self.no_vlm, self.model_note, self.last, self.summary, self.table, self.probe,
                self.heatmap, self.layer]

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        vlm = bool(lm.is_vlm)
        note = ""
        if vlm and lm.random_weights:
            note = note_html(f"<b>{esc(lm.model_id)} has random weights:</b> the check runs, but its answers mean "
                             "nothing. Use it to try the flow.", "warn")
        top = max(0, lm.num_layers - 1)
        return [gr.update(visible=vlm), gr.update(visible=not vlm), note, None, EMPTY,
                gr.update(value=[], elem_classes=[]), gr.update(choices=[], value=None), None,
                gr.update(maximum=top, value=min(top, lm.num_layers // 2))]


def build_hallucination_panel(state: gr.State) -> HallucinationPanel:
    """The Hallucination check tab."""
    last = gr.State(None)
    proposed = gr.State(None)
    scene = gr.State(None)
    no_vlm = gr.HTML(note_html(esc(NO_VLM), "info"), elem_id="grains-hc-no-vlm")
    with gr.Column(visible=False, elem_id="grains-hc-main") as main:
        model_note = gr.HTML(elem_id="grains-hc-model-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                image = safe_image(label="Photo", height=260, sources=["upload", "clipboard"],
                                   elem_id="grains-hc-image")
                photos = shipped_photos()
                with gr.Row(equal_height=True):
                    shipped = gr.Dropdown(photos, value=None, label="…or pick a shipped photo (fills in its labels)",
                                          elem_id="grains-hc-shipped", scale=3)
                    scene_button = gr.Button("New scene", size="sm", elem_id="grains-hc-new-scene", scale=1,
                                             elem_classes=["grains-button-secondary"])
                scene_note = gr.HTML(elem_id="grains-hc-scene-note")
                present = gr.Textbox(label="Objects IN the photo (comma-separated)", max_lines=2,
                                     placeholder="e.g. cup, spoon", elem_id="grains-hc-present")
                absent = gr.Textbox(label="Objects NOT in the photo (comma-separated; empty = propose them)",
                                    max_lines=2, placeholder="e.g. fork, laptop", elem_id="grains-hc-absent")
                with gr.Row(equal_height=False):
                    setting = gr.Radio(SETTINGS, value="adversarial", label="Propose absent objects (POPE setting)",
                                       elem_id="grains-hc-setting", scale=3)
                    propose_button = gr.Button("Propose", size="sm", elem_id="grains-hc-propose", scale=1,
                                               elem_classes=["grains-button-secondary"])
                proposal_note = gr.HTML(elem_id="grains-hc-proposal")
                gr.Markdown("The model is asked “Is there a {object} in the image?” for each object, with your words "
                            "as typed. The vocabulary is the 80 COCO class names; its popularity and co-occurrence "
                            "table were written for this project, not measured on COCO.",
                            elem_classes=["grains-muted"])
                run_button = gr.Button("Run the check", variant="primary", elem_id="grains-hc-run")
            with gr.Column(scale=3, min_width=420):
                summary = gr.HTML(EMPTY, elem_id="grains-hc-summary", elem_classes=["grains-card"])
                table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="grains-hc-table",
                                     label="Per probe (click a row to see where the model looked)")
        gr.Markdown("### Where the model looked")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                probe = gr.Radio([], value=None, label="Probe", elem_id="grains-hc-probe")
                heat_steps = gr.Slider(1, MAX_HEATMAP_STEPS, value=DEFAULT_STEPS, step=1, label="IG steps",
                                       elem_id="grains-hc-heat-steps")
                alpha = gr.Slider(0, 1, value=OVERLAY_ALPHA, step=0.05, label="Overlay opacity (for the next heatmap)")
                heat_note = gr.HTML(elem_id="grains-hc-heat-note")
            with gr.Column(scale=3, min_width=420):
                heatmap = gr.Image(label="Contrastive patch heatmap (truthful vs other answer)", type="pil",
                                   interactive=False, height=OVERLAY_HEIGHT, elem_id="grains-hc-heatmap")
        gr.Markdown("### Steer and re-check")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                source = gr.Radio(SOURCES, value="shipped", label="Build the vector from", elem_id="grains-hc-source")
                max_build = gr.Slider(2, 36, value=12, step=1, label="Shipped probes to build from (yes/no balanced)")
                build_steps = gr.Slider(1, 32, value=8, step=1, label="IG steps per build example")
                suggested = gr.Checkbox(value=True, label="Use the vector's cross-validated layer and strength",
                                        elem_id="grains-hc-suggested")
                with gr.Row():
                    layer = gr.Slider(0, 31, value=0, step=1, label="Layer", elem_id="grains-hc-layer")
                    strength = gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=0.5, step=0.05, label="Strength",
                                         elem_id="grains-hc-strength", info=STRENGTH_INFO)
                with gr.Row():
                    recheck_button = gr.Button("Build vector and re-check", variant="primary",
                                               elem_id="grains-hc-recheck")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="grains-hc-stop", scale=0, min_width=90)
                gr.Markdown("Chosen = the truthful answer (as in the paper's MMHal setting). The re-check asks only "
                            "probes the vector was not built from; a shipped probe about this same photo is left out.",
                            elem_classes=["grains-muted"])
            with gr.Column(scale=3, min_width=420):
                split = gr.HTML(elem_id="grains-hc-split")
                with gr.Accordion("Report (JSON)", open=False):
                    raw = gr.JSON(elem_id="grains-hc-json")

    panel = HallucinationPanel(main=main, no_vlm=no_vlm, model_note=model_note, last=last, summary=summary,
                               table=table, probe=probe, heatmap=heatmap, layer=layer)
    result_outputs = [last, summary, table, probe, split, raw, heatmap, heat_note]

    def results(data: dict) -> list[Any]:
        return [data, summary_html(data), gr.update(value=table_rows(data), elem_classes=[]),
                gr.update(choices=probe_choices(data), value=None), split_html(data), data, None, ""]

    def photo_changed(data: dict | None, img: Any) -> list[Any]:
        """A new photo: the last check's results stay visible but are marked outdated (they were for another
        photo) until the check runs again. Not preprocessed (a bad file is reported once, by the check itself)."""
        path = img.get("path") if isinstance(img, dict) else img
        return stale_updates(data, path)

    image.change(photo_changed, inputs=[last, image], outputs=[summary, table], queue=False, preprocess=False,
                 api_visibility="private", show_progress="hidden")

    @guarded
    def pick_shipped(path: str | None) -> list[Any]:
        if not path:
            return [gr.update(), gr.update(), gr.update()]
        present_text, absent_text = shipped_labels(path)
        return [path, present_text, absent_text]

    shipped.input(pick_shipped, inputs=shipped, outputs=[image, present, absent], api_visibility="private")

    @guarded
    def scene_ui() -> list[Any]:
        data = new_scene()
        return [data["image"], data["present_text"], data["absent_text"], data, scene_note_html(data),
                gr.update(value=None)]

    scene_button.click(scene_ui, inputs=None, outputs=[image, present, absent, scene, scene_note, shipped],
                       api_visibility="private", **one_status(scene_note))

    @guarded
    def propose_ui(present_text: str, setting_value: str) -> list[Any]:
        text, data = propose(present_text, setting_value, None)
        note = esc(f"Proposed in the {data['setting']} setting (as many as the present objects). "
                   + " ".join(data["notes"]))
        return [text, data, f'<div class="grains-muted">{note}</div>']

    propose_button.click(propose_ui, inputs=[present, setting], outputs=[absent, proposed, proposal_note],
                         api_visibility="private")

    @guarded
    def check_ui(session: Session, img: str | None, present_text: str, absent_text: str, setting_value: str,
                 prop: dict | None, scene_data: dict | None, progress: gr.Progress = gr.Progress()) -> list[Any]:
        data = run_check(session, img, present_text, absent_text, setting_value, prop,
                         progress=gradio_progress(progress), scene=scene_data)
        return results(data)

    run_button.click(check_ui, inputs=[state, image, present, absent, setting, proposed, scene],
                     outputs=result_outputs,
                     concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(summary))

    @guarded
    def heat_ui(session: Session, data: dict | None, index: Any, steps: Any, opacity: float,
                progress: gr.Progress = gr.Progress()) -> list[Any]:
        if index is None or not data:
            return [None, ""]
        progress(0.2, desc="Integrated gradients over the patches…")
        overlay, probe_data, info, used = probe_heatmap(session, data, index, steps, opacity)
        return [overlay, probe_note(probe_data, info, used)]

    probe.change(heat_ui, inputs=[state, last, probe, heat_steps, alpha], outputs=[heatmap, heat_note],
                 concurrency_id=SHORT_QUEUE, api_visibility="private", **one_status(heat_note))

    def row_selected(evt: gr.SelectData) -> Any:
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        return gr.update(value=int(index))

    table.select(row_selected, inputs=None, outputs=probe, api_visibility="private", queue=False)

    @guarded
    def recheck_ui(session: Session, data: dict | None, src: str, n_build: Any, steps: Any, use_suggested: bool,
                   layer_value: Any, strength_value: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:
        estimate = gradio_progress(progress)
        session.build_status = ""
        try:
            report = run_recheck(session, data, src, n_build, steps, use_suggested, layer_value, strength_value,
                                 progress=estimate, should_stop=lambda: session.cancel)
        except Cancelled:
            stopped = note_html(f"Stopped{esc(' after ' + estimate.text if estimate.text else '')}; the check above "
                                "is unchanged.", "warn")
            session.build_status = stopped  # for the Stop watch, should this reply be lost
            return [gr.update(), gr.update(), gr.update(), gr.update(), stopped, gr.update(), gr.update(),
                    gr.update()]
        finally:
            session.cancel, session.build_pending = False, False
        return results(report)

    def arm(session: Session) -> str:
        """At once on click (outside the queue), so Stop also works while the re-check waits in the queue."""
        session.cancel, session.build_pending = False, True
        return ""

    recheck_button.click(arm, inputs=state, outputs=split, queue=False, api_visibility="private").then(
        recheck_ui, inputs=[state, last, source, max_build, build_steps, suggested, layer, strength],
        outputs=result_outputs, concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(split))

    def stop(session: Session) -> list[Any]:
        if not request_stop(session):
            return [note_html("Nothing is running.", "info"), gr.Timer(active=False)]
        return [note_html("Stopping after the current step…", "warn"), gr.Timer(active=True)]

    wire_stop_watch(stop_button, stop, state, split)  # as on the Steer tab: shows how a stopped re-check ended

    # API: /check_image (the hidden components give the endpoint its signature)
    with gr.Column(visible=False):
        api_in = [gr.File(label="image", type="filepath"), gr.Textbox(label="present"), gr.Textbox(label="absent"),
                  gr.Textbox(value="", label="setting"), gr.Textbox(value="", label="build_from"),
                  gr.Number(value=None, label="strength")]
        api_out = [gr.JSON(label="report")]
    api_endpoint(api.check_image, [state, *api_in], api_out, "check_image")
    with gr.Column(visible=False):  # /new_scene and /probe_heatmap
        scene_in = [gr.Number(value=None, label="seed", precision=0)]
        scene_out = [gr.Image(type="filepath", label="scene"), gr.JSON(label="contents")]
        heat_in = [gr.File(label="image", type="filepath"), gr.Textbox(label="object"),
                   gr.Textbox(value="yes", label="truth"), gr.JSON(value=None, label="scene"),
                   gr.Number(value=DEFAULT_STEPS, label="steps", precision=0)]
        heat_out = [gr.Image(type="pil", label="heatmap"), gr.JSON(label="summary")]
    api_endpoint(new_scene_api, scene_in, scene_out, "new_scene", queue_id=None)
    api_endpoint(probe_heatmap_api, [state, *heat_in], heat_out, "probe_heatmap")
    return panel
