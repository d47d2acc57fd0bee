"""Evaluate: accuracy before and after steering (TruthfulQA MC, preference pairs, POPE-style probes) with an exact
McNemar p-value and the interval that inverts the same test (they never disagree), a one-line reading and the side
effects of the steered setting; a layer x strength sweep heatmap (Holm-corrected marks, "best of N"), effect against
side effect per strength; CSV downloads. Runs show rows done and an estimate of the time left, stop between rows on
Stop, and their results are marked outdated when an input they depend on changes (cleared on a model change).

Layout and event wiring only: the work is in components.actions.evaluate, the HTML and figures in
components.views.evaluate, the checks in components.inputs and the API endpoints in components.api."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from components import api
from components.actions.compare import job_key
from components.actions.evaluate import STOP_FLAGS, EtaProgress, evaluation_csv, run_evaluation, run_sweep
from components.actions.evaluate import sweep_csv as sweep_csv_file
from components.common import (
    MODEL_QUEUE,
    api_endpoint,
    esc,
    guarded,
    note_html,
    one_status,
    prompt_format_dropdown,
    prompt_format_update,
    warn,
)
from components.datasets import UPLOAD, dataset_choices
from components.inputs import session_steering, sweep_grid
from components.model_cache import session_model
from components.session import Session
from components.steering_panel import STRENGTH_HELP, SteeringPanel
from components.views.compare import outdated_html
from components.views.evaluate import (
    EVAL_WAITING,
    SWEEP_WAITING,
    items_html,
    result_html,
    side_effect_figure,
    sweep_figure,
    sweep_note,
    timing_note,
)
from grains.errors import Cancelled

if TYPE_CHECKING:
    from grains.models import LoadedModel

DEFAULT_EVAL_DATASET = "sentiment_pairs"  # the shipped default vector's concept...
DEFAULT_EVAL_OFFSET = 160  # ...and the first row it was not built from (scripts/build_default_vector.py --rows)
MAX_SWEEP_CELLS = 60


@dataclass
class EvaluatePanel:
    dataset: gr.Dropdown
    offset: gr.Number
    prompt_format: gr.Dropdown | None = None
    rows: gr.Slider | None = None
    length_normalize: gr.Checkbox | None = None
    results: list[Any] | None = None  # summary, items, csv, plot, sweep note, sweep csv, side-effect plot

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.dataset, self.prompt_format, *(self.results or [])]

    def refresh(self, session: Session, lm: LoadedModel) -> list[Any]:
        """A (new) model: its formats and datasets, and every result of this tab cleared (from the previous one)."""
        cleared = [EVAL_WAITING, "", gr.update(value=None, interactive=False), None, SWEEP_WAITING,
                   gr.update(value=None, interactive=False), None]
        return [gr.update(choices=dataset_choices(lm.is_vlm), value="pope_style" if lm.is_vlm else "truthfulqa"),
                prompt_format_update(lm), *cleared[:len(self.results or [])]]


def build_evaluate_panel(state: gr.State, steer: SteeringPanel) -> EvaluatePanel:
    """The Evaluate tab."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            dataset = gr.Dropdown(dataset_choices(False), value=DEFAULT_EVAL_DATASET, label="Dataset")
            upload = gr.File(label="Dataset file (JSONL/CSV)", file_types=[".jsonl", ".csv", ".tsv"],
                             type="filepath", visible=False, height=100)
            with gr.Row():
                rows = gr.Slider(1, 200, value=20, step=1, label="Rows", elem_id="grains-eval-rows")
                offset = gr.Number(value=DEFAULT_EVAL_OFFSET, precision=0, minimum=0, label="First row", min_width=90,
                                   elem_id="grains-eval-offset")
            gr.Markdown("The shipped vector was built from sentiment pairs rows 0–159: evaluate from row 160 on "
                        "(a vector's card says which rows built it).", elem_classes=["grains-muted"])
            prompt_format = prompt_format_dropdown("grains-eval-prompt-format")
            use_vector = gr.Checkbox(value=True,
                                     label="Also evaluate steered (the Steer tab's vector, layer, strength, norm)",
                                     info="steered results come with their side effects (KL, repetition)")
            length_normalize = gr.Checkbox(value=False, label="Length-normalise answer log-probs",
                                           info="used by the evaluation and the sweep")
            with gr.Row():
                evaluate_button = gr.Button("Evaluate", variant="primary", elem_id="grains-evaluate")
                eval_stop = gr.Button("Stop", variant="stop", elem_id="grains-eval-stop", scale=0, min_width=100)
        with gr.Column(scale=3, min_width=420):
            summary = gr.HTML(EVAL_WAITING, elem_id="grains-eval-summary", elem_classes=["grains-card"])
            csv_button = gr.DownloadButton("Download per-item results (CSV)", size="sm", interactive=False)
            with gr.Accordion("Per-item results (numbered by dataset row)", open=False):
                items = gr.HTML(elem_id="grains-eval-items")
    gr.Markdown("### Layer × strength sweep")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            layers = gr.Textbox(label="Layers (blank: the vector's candidate layers)", placeholder="e.g. 3, 6, 9, 12",
                                max_lines=1, elem_id="grains-sweep-layers")
            strengths = gr.Textbox("-0.25, 0.1, 0.25, 0.5", label="Strengths", max_lines=1,
                                   elem_id="grains-sweep-strengths", info=f"-4 to 4; {STRENGTH_HELP}")
            gr.Markdown("Each cell scores every row with the vector at that layer and strength (the Steer tab's "
                        "keep-the-norm switch, this tab's prompt format and length normalisation). '*' marks cells "
                        "whose exact McNemar test stays significant after Holm's correction over all the cells "
                        "tested. Each cell's side effect, the mean KL on neutral prompts, is measured too.",
                        elem_classes=["grains-muted"])
            with gr.Row():
                sweep_button = gr.Button("Run sweep", elem_id="grains-sweep")
                sweep_stop = gr.Button("Stop", variant="stop", elem_id="grains-sweep-stop", scale=0, min_width=100)
        with gr.Column(scale=3, min_width=420):
            plot = gr.Plot(label="Accuracy gain", elem_id="grains-sweep-plot")
            sweep_info = gr.HTML(SWEEP_WAITING, elem_id="grains-sweep-note")
            sweep_csv = gr.DownloadButton("Download sweep (CSV)", size="sm", interactive=False)
            side_plot = gr.Plot(label="Effect against side effect", elem_id="grains-side-effect-plot")
            gr.Markdown("One point per strength at one layer (other layers in the legend): accuracy gain against "
                        "the mean KL divergence of next-token distributions on neutral prompts, unsteered to "
                        "steered. Right of the dashed line is over the KL budget that the build's choice respects.",
                        elem_classes=["grains-muted"])

    dataset.change(lambda name: gr.update(visible=name == UPLOAD), inputs=dataset, outputs=upload, queue=False,
                   api_visibility="private")

    def stop_flag(session: Session) -> Any:
        STOP_FLAGS[job_key(session)] = False
        return lambda: STOP_FLAGS.get(job_key(session), False)

    @guarded
    def evaluate_ui(session: Session, name: str, up: str | None, n: Any, first: Any, steered: bool, layer: Any,
                    strength: Any, ln: bool, norm: bool = True, fmt: Any = None,
                    progress: gr.Progress = gr.Progress()) -> list[Any]:
        if steered and session.vector is None:
            warn("No steering vector in this session: evaluating the unsteered model only.")
            steered = False
        steering = session_steering(session, session_model(session), layer, strength, norm) if steered else None
        meter = EtaProgress(progress)
        try:
            result = run_evaluation(session, name, up, n, first, steering, ln, progress=meter, prompt_format=fmt,
                                    side_effects=True, should_stop=stop_flag(session))
        except Cancelled as exc:
            return [note_html(f"<b>{esc(exc)}</b> No result is shown for a stopped run; the model is unsteered "
                              "again.", "warn"), "", gr.update(value=None, interactive=False)]
        finally:
            STOP_FLAGS.pop(job_key(session), None)
        timing = timing_note(time.perf_counter() - meter.start, meter.first_eta)
        return [result_html(result) + timing, items_html(result),
                gr.update(value=evaluation_csv(result), interactive=True)]

    def request_stop(session: Session) -> None:
        if job_key(session) in STOP_FLAGS:
            STOP_FLAGS[job_key(session)] = True  # polled before each row: the run ends with no hook left on

    eval_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")
    sweep_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")

    evaluate_button.click(evaluate_ui, inputs=[state, dataset, upload, rows, offset, use_vector, steer.layer,
                                               steer.strength, length_normalize, steer.normalize, prompt_format],
                          outputs=[summary, items, csv_button], concurrency_id=MODEL_QUEUE, api_visibility="private",
                          **one_status(summary))

    @guarded
    def sweep_ui(session: Session, name: str, up: str | None, n: Any, first: Any, lay: str, st: str,
                 norm: bool = True, ln: bool = False, fmt: Any = None, steer_layer: Any = None,
                 progress: gr.Progress = gr.Progress()) -> list[Any]:
        layer_list, steerings = sweep_grid(session, session_model(session), lay, st, norm, MAX_SWEEP_CELLS)
        try:
            result = run_sweep(session, name, up, n, first, layer_list, steerings, progress=EtaProgress(progress),
                               length_normalize=ln, prompt_format=fmt, kl=True, should_stop=stop_flag(session))
        except Cancelled as exc:
            return [None, note_html(f"<b>{esc(exc)}</b> No result is shown for a stopped sweep.", "warn"),
                    gr.update(value=None, interactive=False), None]
        finally:
            STOP_FLAGS.pop(job_key(session), None)
        fig = sweep_figure(result)
        csv_path = sweep_csv_file(result)
        return [fig, sweep_note(result), gr.update(value=csv_path, interactive=True),
                side_effect_figure(result, steer_layer)]

    sweep_button.click(sweep_ui, inputs=[state, dataset, upload, rows, offset, layers, strengths, steer.normalize,
                                         length_normalize, prompt_format, steer.layer],
                       outputs=[plot, sweep_info, sweep_csv, side_plot], concurrency_id=MODEL_QUEUE,
                       api_visibility="private", **one_status(sweep_info))

    # API: /evaluate, /sweep (hidden components give each endpoint its signature)
    with gr.Column(visible=False):
        api_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                  gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                  gr.Checkbox(value=True, label="steered"), gr.Number(value=0, label="layer"),
                  gr.Number(value=0.5, label="strength"), gr.Checkbox(value=True, label="normalize"),
                  gr.Checkbox(value=False, label="length_normalize"), gr.Textbox(value="", label="prompt_format"),
                  gr.Checkbox(value=True, label="side_effects")]
        api_out = [gr.JSON(label="result"), gr.File(label="csv")]
    api_endpoint(api.evaluate, [state, *api_in], api_out, "evaluate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                     gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                     gr.Textbox(value="", label="layers"), gr.Textbox(value="0.25, 0.5, 1", label="strengths"),
                     gr.Checkbox(value=True, label="normalize"), gr.Checkbox(value=False, label="length_normalize"),
                     gr.Textbox(value="", label="prompt_format"), gr.Checkbox(value=True, label="kl")]
        api_sw_out = [gr.JSON(label="result"), gr.File(label="csv")]
    api_endpoint(api.sweep, [state, *api_sw_in], api_sw_out, "sweep")

    # results that depend on an input are marked outdated as soon as it changes
    def mark_eval(what: str) -> Any:
        def mark(summ: Any, table: Any, note: Any) -> list[Any]:
            return [outdated_html(summ, what), outdated_html(table, what), outdated_html(note, what)]
        return mark

    watched = [(dataset, "the dataset"), (upload, "the dataset file"), (rows, "the number of rows"),
               (offset, "the first row"), (prompt_format, "the prompt format"), (use_vector, "the steered switch"),
               (length_normalize, "length normalisation"), (steer.layer, "the layer"),
               (steer.strength, "the strength"), (steer.normalize, "the keep-the-norm switch"),
               (steer.card, "the steering vector"), (layers, "the layers"), (strengths, "the strengths")]
    for component, what in watched:
        component.change(mark_eval(what), inputs=[summary, items, sweep_info], outputs=[summary, items, sweep_info],
                         queue=False, api_visibility="private", show_progress="hidden")

    return EvaluatePanel(dataset=dataset, offset=offset, prompt_format=prompt_format, rows=rows,
                         length_normalize=length_normalize,
                         results=[summary, items, csv_button, plot, sweep_info, sweep_csv, side_plot])
