"""Steering vector: build one (from the current example or a dataset, with progress and cancel), save and load it,
and pick the layer, strength and norm-rescaling used to steer.

Layout and event wiring only: the work is in components.actions.steering, the HTML in components.views.steering,
the checks in components.inputs and the API endpoints in components.api."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.steering import claim_rows_needed, load_vector_file, request_stop, run_build
from components.attribution_panel import AttributionPanel
from components.common import (
    MODEL_QUEUE,
    SHORT_QUEUE,
    api_endpoint,
    esc,
    gradio_progress,
    guarded,
    note_html,
    one_status,
    warn,
)
from components.datasets import UPLOAD, dataset_choices
from components.inputs import ALLOW_OTHER_LABEL
from components.model_cache import session_model
from components.server_export import build_server_export
from components.session import Session
from components.views.steering import build_note, cv_table, status_after_refresh, vector_card
from grains.errors import Cancelled
from grains.side_effects import DEFAULT_KL_BUDGET
from grains.steering import MAX_STRENGTH

if TYPE_CHECKING:
    from grains.models import LoadedModel

SOURCES = [("the current example (Attribute tab)", "example"), ("a dataset", "dataset")]
METHODS = [("GrAInS (default): mean(d+) − mean(d−) of the ablation deltas", "grains"),
           ("GrAInS, mean of deltas (same as the default)", "mean"),
           ("GrAInS, PCA: PC1(d+) − PC1(d−), signs aligned", "pca"), ("CAA: mean h(s+) − h(s−)", "caa")]
MAX_STRENGTH_UI = MAX_STRENGTH  # one range everywhere: -4 .. 4
STRENGTH_HELP = "negative steers the other way (toward the rejected answers)"
STRENGTH_INFO = (f"-{MAX_STRENGTH:g} to {MAX_STRENGTH:g}, in units of the layer's median hidden-state norm; "
                 f"{STRENGTH_HELP}")
BUILD_PHASES = {"example": "cross-validation of layer and strength (if asked), then the side effects"}
CV_INFO = ("strength 0 is a candidate; nested cross-validation estimates the gain, a win needs a paired test; "
           f"cells over the KL budget ({DEFAULT_KL_BUDGET:g} nats on neutral prompts) are left out")


def slider_updates(session: Session, lm: LoadedModel) -> list[Any]:
    """Layer slider (max = layers - 1) and strength at the vector's suggestions."""
    v = session.vector
    layer = v.default_layer if v is not None and v.default_layer is not None else lm.num_layers // 2
    strength = v.default_strength if v is not None else 0.5
    layer = min(max(int(layer), 0), lm.num_layers - 1)
    strength = min(max(float(strength), -MAX_STRENGTH_UI), MAX_STRENGTH_UI)
    return [gr.update(maximum=lm.num_layers - 1, value=layer), gr.update(value=strength)]


def build_ended_status(session: Session) -> list[Any]:
    """What the Stop timer shows: nothing new while the build still runs, then how the build ended (and the timer
    stops).

    Args:
        session: whose build.

    Returns:
        [the status update, the timer update].
    """
    if session.build_pending:
        return [gr.update(), gr.update()]
    return [session.build_status or gr.update(), gr.Timer(active=False)]


def wire_stop_watch(button: gr.Button, stop: Callable[[Session], list[Any]], state: gr.State,
                    status: gr.HTML) -> gr.Timer:
    """Stop, then a watch: `stop` (outside the queue) returns [its note, a timer update that starts or not the
    watch]; the watch asks once a second, also outside the queue, whether the job has ended and shows how it ended.
    The job's own reply travels on the queue's event stream, which a loaded server can fail to deliver, and the page
    would then read "Stopping…" for ever.

    Args:
        button: the Stop button.
        stop: session -> [status note, gr.Timer update].
        state: the session state.
        status: where both the note and the closing status show.

    Returns:
        The watch's timer.
    """
    watch = gr.Timer(1.0, active=False)
    button.click(stop, inputs=state, outputs=[status, watch], queue=False, api_visibility="private")
    watch.tick(build_ended_status, inputs=state, outputs=[status, watch], queue=False, api_visibility="private",
               show_progress="hidden")
    return watch


@dataclass
class SteeringPanel:
    layer: gr.Slider
    strength: gr.Slider
    normalize: gr.Checkbox
    card: gr.HTML
    table: gr.Dataframe
    download: gr.DownloadButton
    source: gr.Radio
    dataset: gr.Dropdown
    rows: gr.Slider
    method: gr.Dropdown
    cross_validate: gr.Checkbox
    vector_changed: list[Any] | None = None
    status: gr.HTML | None = None  # the build's progress, queue place, result or error (one place)

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.card, self.table, self.download, self.layer, self.strength, self.dataset, self.status]

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        """After a page load or a model switch: the card, table and sliders for the session's vector now (the
        vector card is rebuilt, so it never describes a vector of the previous model) and the build status reset
        (an old "Built in ..." no longer applies)."""
        return [vector_card(session), cv_table(session), download_update(session), *slider_updates(session, lm),
                gr.update(choices=dataset_choices(lm.is_vlm), value="pope_style" if lm.is_vlm else "truthfulqa"),
                status_after_refresh(session)]


def download_update(session: Session) -> Any:
    path = session.vector_path if session.vector is not None else None
    return gr.update(value=path, interactive=path is not None)


def build_steering_panel(state: gr.State, attr: AttributionPanel) -> SteeringPanel:
    """The Steer tab (vector and steering controls)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=380):
            card = gr.HTML(elem_id="grains-vector-card", elem_classes=["grains-card"])
            with gr.Row():
                download = gr.DownloadButton("Save vector (.safetensors)", size="sm", interactive=False,
                                             elem_id="grains-save-vector", variant="secondary",
                                             elem_classes=["grains-button-secondary"])
                upload_vector = gr.UploadButton("Load vector…", file_types=[".safetensors", ".gguf"], size="sm",
                                                elem_id="grains-load-vector", variant="secondary",
                                                elem_classes=["grains-button-secondary"])
                allow_other = gr.Checkbox(value=False, label=ALLOW_OTHER_LABEL, elem_id="grains-allow-other-model",
                                          info="off: a vector built for another model is refused")
            with gr.Accordion("Cross-validation table (plain CV, every layer × strength cell; its maximum is a "
                              "best-of-N figure, not an estimate)", open=False):
                table = gr.Dataframe(headers=["layer", "strength", "margin gain (nats)", "fold spread", "accuracy"],
                                     interactive=False, wrap=True)
            gr.Markdown("### Steering controls")
            with gr.Row():
                layer = gr.Slider(0, 17, value=9, step=1, label="Layer", elem_id="grains-layer",
                                  info="decoder layer whose output is steered")
                strength = gr.Slider(-MAX_STRENGTH_UI, MAX_STRENGTH_UI, value=0.5, step=0.05, label="Strength λ",
                                     elem_id="grains-strength", info=STRENGTH_INFO)
            with gr.Row():
                normalize = gr.Checkbox(value=True, label="Keep each token's norm (h'' = h' · |h| / |h'|)",
                                        elem_id="grains-normalize",
                                        info="used by Compare, Evaluate, the sweeps and the build's cross-validation")
                reset = gr.Button("Use the vector's suggestion", size="sm", variant="secondary",
                                  elem_classes=["grains-button-secondary"])
            build_server_export(state, layer, strength)
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### Build a vector")
            source = gr.Radio(SOURCES, value="dataset", label="From")
            dataset = gr.Dropdown(dataset_choices(False), value="truthfulqa", label="Dataset",
                                  elem_id="grains-build-dataset")
            upload = gr.File(label="Dataset file (JSONL or CSV: prompt, chosen, rejected [, image])",
                             file_types=[".jsonl", ".csv", ".tsv"], type="filepath", visible=False,
                             height=100)
            with gr.Row():
                rows = gr.Slider(1, 64, value=12, step=1, label="Rows", elem_id="grains-build-rows",
                                 info=f"a win claim needs at least {claim_rows_needed()} rows")
                offset = gr.Number(value=0, precision=0, minimum=0, label="First row", min_width=90)
            method = gr.Dropdown(METHODS, value="grains", label="Method")
            cross_validate = gr.Checkbox(value=True, label="Choose layer and strength by 3-fold cross-validation",
                                         info=CV_INFO)
            gr.Markdown("Top-k, content-only, IG steps, target and prompt format come from the Attribute tab; the "
                        "keep-the-norm switch from the steering controls.",
                        elem_classes=["grains-muted"])
            with gr.Row():
                build = gr.Button("Build vector", variant="primary", elem_id="grains-build")
                cancel = gr.Button("Stop", variant="stop", elem_id="grains-cancel", scale=0, min_width=110)
            status = gr.HTML(elem_id="grains-build-status", elem_classes=["grains-status"])

    panel = SteeringPanel(layer=layer, strength=strength, normalize=normalize, card=card, table=table,
                          download=download, source=source, dataset=dataset, rows=rows, method=method,
                          cross_validate=cross_validate, status=status)

    def source_changed(src: str, name: str) -> list[Any]:
        from_data = src == "dataset"
        return [gr.update(visible=from_data), gr.update(visible=from_data and name == UPLOAD),
                gr.update(visible=from_data), gr.update(visible=from_data), gr.update(visible=from_data)]

    for trigger in (source.change, dataset.change):
        trigger(source_changed, inputs=[source, dataset], outputs=[dataset, upload, rows, offset, cross_validate],
                queue=False, api_visibility="private")

    vector_outputs = [card, table, download, layer, strength]

    def vector_view(session: Session) -> list[Any]:
        lm = session_model(session)
        return [vector_card(session), cv_table(session), download_update(session), *slider_updates(session, lm)]

    @guarded
    def build_ui(session: Session, src: str, name: str | None, up: str | None, n_rows: Any, first: Any, meth: str,
                 k: Any, steps: Any, tgt: str, co: bool, sp: bool, cv: bool, norm: bool = True, fmt: Any = None,
                 progress: gr.Progress = gr.Progress()) -> list[Any]:
        progress(0.0, desc="Starting…")
        estimate = gradio_progress(progress, then=BUILD_PHASES)
        try:
            summary = run_build(session, src, name, up, n_rows, first, meth, k, steps, tgt, co, sp, cv,
                                progress=estimate, normalize=norm, prompt_format=fmt)
        except Cancelled:  # the run's own state: how far it got, never a time left for a job that has ended
            return [session, *vector_view(session),
                    note_html(f"Stopped at {esc(estimate.stopped_text())}; the previous vector is kept.", "warn")]
        return [session, *vector_view(session), build_note(summary, bool(cv))]

    def arm(session: Session) -> str:
        """Runs at once on click (outside the queue), so Stop also works while the build waits in the queue."""
        session.cancel, session.build_pending, session.build_started = False, True, False
        return ""  # the build's own tracker fills this box: its place in the queue, then progress and time left

    def build_then_disarm(session: Session, *args: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:
        session.build_started, session.build_status = True, ""
        try:
            outputs = build_ui(session, *args, progress=progress)
            session.build_status = outputs[-1]
            return outputs
        except gr.Error as exc:
            session.build_status = note_html(f"<b>Could not do that:</b> {esc(getattr(exc, 'message', exc))}",
                                             "error")
            raise
        finally:
            session.cancel, session.build_pending, session.build_started = False, False, False

    build.click(arm, inputs=state, outputs=status, queue=False, api_visibility="private").then(
        build_then_disarm, inputs=[state, source, dataset, upload, rows, offset, method, attr.k, attr.steps,
                                   attr.target, attr.content_only, attr.skip_punctuation, cross_validate, normalize,
                                   attr.prompt_format],
        outputs=[state, *vector_outputs, status], concurrency_id=MODEL_QUEUE, api_visibility="private",
        **one_status(status))

    def request_cancel(session: Session) -> list[Any]:
        if not request_stop(session):
            return [note_html("No build is running.", "info"), gr.Timer(active=False)]
        if not session.build_started:  # still queued: it will end at once when its turn comes, so say so now
            return [note_html("Stopped before it started (it was waiting in the queue); the previous vector is kept.",
                              "warn"), gr.Timer(active=False)]
        return [note_html("Stopping after the current step…", "warn"), gr.Timer(active=True)]

    wire_stop_watch(cancel, request_cancel, state, status)

    @guarded
    def load_ui(session: Session, path: str | None, allow: bool) -> list[Any]:
        for warning in load_vector_file(session, path, allow):
            warn(warning)
        return [session, *vector_view(session), note_html("Vector loaded.", "ok")]

    upload_vector.upload(load_ui, inputs=[state, upload_vector, allow_other],
                         outputs=[state, *vector_outputs, status],
                         concurrency_id=SHORT_QUEUE, api_visibility="private", **one_status(status))

    @guarded
    def suggested(session: Session) -> list[Any]:
        return slider_updates(session, session_model(session))

    reset.click(suggested, inputs=state, outputs=[layer, strength], api_visibility="private", queue=False)

    # API: /build_vector, /stop_build, /load_vector, /vector_info (hidden components give each its signature)
    with gr.Column(visible=False):
        api_in = [gr.Textbox(value="dataset", label="source"), gr.Textbox(value="truthfulqa", label="dataset"),
                  gr.File(label="file", type="filepath"), gr.Number(value=12, label="rows"),
                  gr.Number(value=0, label="offset"), gr.Textbox(value="grains", label="method"),
                  gr.Number(value=5, label="k"), gr.Number(value=16, label="steps"),
                  gr.Checkbox(value=True, label="cross_validate"), gr.Checkbox(value=True, label="normalize"),
                  gr.Textbox(value="", label="prompt_format")]
        api_out = [gr.JSON(label="summary"), gr.File(label="vector")]
    api_endpoint(api.build_vector, [state, *api_in], [state, *api_out], "build_vector")

    with gr.Column(visible=False):
        api_stop_out = gr.JSON(label="stop")
    api_endpoint(api.stop_build, [state], [api_stop_out], "stop_build", queue_id=None)

    with gr.Column(visible=False):
        api_vec_in = [gr.File(label="vector_file", type="filepath"),
                      gr.Checkbox(value=False, label="allow_other_model")]
        api_vec_out = gr.JSON(label="vector")
    api_endpoint(api.load_vector, [state, *api_vec_in], [state, api_vec_out], "load_vector")

    with gr.Column(visible=False):
        api_info_out = gr.JSON(label="vector")
    api_endpoint(api.vector_info, [state], [api_info_out], "vector_info", queue_id=None)
    panel.vector_changed = vector_outputs
    return panel
