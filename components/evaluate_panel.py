"""Evaluate: accuracy before and after steering (TruthfulQA MC, preference pairs, POPE-style probes) with an exact
McNemar p-value, a bootstrap CI and a one-line reading; a layer x strength sweep heatmap; CSV downloads."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.app_state import Session, clean_json, parse_numbers, scratch_dir
from components.attribution_panel import whole
from components.charts import sweep_heatmap
from components.common import (
    MODEL_QUEUE,
    api_endpoint,
    esc,
    fmt_float,
    guarded,
    note_html,
    session_model,
    warn,
)
from components.compare_panel import require_vector
from components.datasets import UPLOAD, check_kind_fits, dataset_choices, load_rows
from components.steering_panel import SteeringPanel
from grains.errors import InputError

KIND_LABELS = {"truthfulqa": "TruthfulQA multiple choice", "pairs": "preference pairs", "probes": "yes/no probes"}
MAX_SWEEP_CELLS = 60


def run_evaluation(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any, steered: bool,
                   layer: Any, strength: Any, length_normalize: bool = False, progress: Any = None) -> dict:
    """Evaluate the session's model on a dataset, unsteered and (when `steered`) with its vector."""
    from grains.evaluation import evaluate

    lm = session_model(session)
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    vector = require_vector(session) if steered else None
    result = evaluate(lm, data, kind, vector=vector, layer=whole(layer, "The layer") if steered else None,
                      strength=float(strength) if steered else None, per_item=True,
                      length_normalize=bool(length_normalize), progress=progress)
    result["dataset"] = description
    for item, row in zip(result.get("items", []), data):
        item["question"] = getattr(row, "question", None) or getattr(row, "prompt", "")
    session.last_eval = {"dataset": dataset, "rows": rows, "offset": offset, "steered": steered,
                         "layer": layer, "strength": strength, "kind": kind}
    return clean_json(result)


def run_sweep(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any, layers: str,
              strengths: str, progress: Any = None) -> dict:
    """Accuracy gain over a layer x strength grid with the session's vector."""
    from grains.evaluation import sweep

    lm = session_model(session)
    vector = require_vector(session)
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    layer_list = ([int(x) for x in parse_numbers(layers, "Layers", whole=True)] if (layers or "").strip()
                  else [la for la in (vector.meta or {}).get("candidate_layers", []) if la < lm.num_layers]
                  or list(range(lm.num_layers)))
    strength_list = parse_numbers(strengths, "Strengths")
    if len(layer_list) * len(strength_list) > MAX_SWEEP_CELLS:
        raise InputError(f"The grid has {len(layer_list) * len(strength_list)} cells; keep it to {MAX_SWEEP_CELLS} "
                         "or fewer (each cell scores every row).")
    result = sweep(lm, data, kind, vector, layer_list, strength_list, progress=progress)
    result["dataset"] = description
    return clean_json(result)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _dist(value: Any) -> str:
    if not value:
        return "n/a"
    return ", ".join(f"{esc(k)}: {float(v):.0%}" for k, v in value.items())


def _layers(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def result_html(result: dict) -> str:
    """Metric table (unsteered, steered, change), the reading, p-value and CI."""
    kind = result.get("kind", "")
    steered = result.get("steered")
    metrics = [("accuracy" if kind != "truthfulqa" else "MC1 accuracy", "accuracy", _pct)]
    if kind == "truthfulqa":
        metrics.append(("MC2 (prob. mass on true answers)", "mc2", _pct))
    metrics.append(("mean margin (log-prob)", "margin", lambda v: fmt_float(v)))
    if kind == "probes":
        metrics += [("precision", "precision", _pct), ("recall", "recall", _pct), ("F1", "f1", _pct),
                    ("yes ratio", "yes_ratio", _pct)]
    rows = []
    for label, key, fmt in metrics:
        before, after = result.get(f"{key}_unsteered"), result.get(key)
        change = ""
        if steered and isinstance(before, int | float) and isinstance(after, int | float):
            change = f"{(after - before) * (100 if fmt is _pct else 1):+.2f}{' pts' if fmt is _pct else ''}"
        rows.append(f"<tr><th>{esc(label)}</th><td class='grains-num'>{fmt(before)}</td>"
                    f"<td class='grains-num'>{fmt(after) if steered else '—'}</td><td class='grains-num'>{change}"
                    f"</td></tr>")
    if kind != "truthfulqa":
        rows.append(f"<tr><th>answers given</th><td>{_dist(result.get('answer_distribution_unsteered'))}</td>"
                    f"<td>{_dist(result.get('answer_distribution')) if steered else '—'}</td><td></td></tr>")
    head = (f"<div class='grains-muted'>{esc(KIND_LABELS.get(kind, kind))} · {esc(result.get('dataset', ''))} · "
            f"n = {result.get('n')}" + (f" · layer {esc(_layers(result.get('layer')))}, strength "
                                        f"{result.get('strength'):g}" if steered else " · unsteered only") + "</div>")
    table = ("<table class='grains-summary'><tr><th></th><th>unsteered</th><th>steered</th><th>change</th></tr>"
             + "".join(rows) + "</table>")
    if not steered:
        return head + table
    p = result.get("p_value")
    kind_note = "ok" if p is not None and p < 0.05 and (result.get("gain") or 0) > 0 else "info"
    reading = note_html(f"<b>{esc(result.get('reading', ''))}</b><br>Exact McNemar test on the items that changed; "
                        "95% paired-bootstrap interval of the accuracy gain.", kind_note)
    bias = ""
    dist = result.get("answer_distribution") or {}
    if dist and max(dist.values()) >= 0.8:
        top = max(dist, key=dist.get)
        bias = note_html(f"Steered, the model answers {esc(top)} {dist[top]:.0%} of the time: an accuracy change may "
                         "come from a shifted answer bias rather than better answers.", "warn")
    return head + table + reading + bias


def items_table(result: dict) -> list[list[Any]]:
    out = []
    for item in result.get("items", []):
        out.append([item["index"], (item.get("question") or "")[:120], item.get("answer_unsteered"),
                    item.get("answer"), item.get("correct_unsteered"), item.get("correct"),
                    round(item.get("margin_unsteered") or 0.0, 3), round(item.get("margin") or 0.0, 3)])
    return out


ITEM_HEADERS = ["#", "question", "answer (unsteered)", "answer (steered)", "correct (unsteered)",
                "correct (steered)", "margin (unsteered)", "margin (steered)"]


def write_csv(headers: list[str], rows: list[list[Any]], stem: str) -> str:
    folder = scratch_dir("eval-")
    path = folder / f"{stem}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(rows)
    return str(path)


def evaluation_csv(result: dict) -> str:
    return write_csv(ITEM_HEADERS, items_table(result), "grains_evaluation")


def sweep_rows(result: dict) -> list[list[Any]]:
    rows = []
    for i, layer in enumerate(result["layers"]):
        for j, strength in enumerate(result["strengths"]):
            rows.append([layer, strength, result["values"][i][j], result["accuracy"][i][j],
                         result["margin_gain"][i][j], result["p_values"][i][j], result["significant"][i][j]])
    return rows


SWEEP_HEADERS = ["layer", "strength", "accuracy gain", "accuracy", "margin gain", "p value", "CI excludes 0"]


@dataclass
class EvaluatePanel:
    dataset: gr.Dropdown
    offset: gr.Number

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.dataset]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        return [gr.update(choices=dataset_choices(lm.is_vlm), value="pope_style" if lm.is_vlm else "truthfulqa")]


def build_evaluate_panel(state: gr.State, steer: SteeringPanel) -> EvaluatePanel:
    """The Evaluate tab."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            dataset = gr.Dropdown(dataset_choices(False), value="truthfulqa", label="Dataset")
            upload = gr.File(label="Dataset file (JSONL/CSV)", file_types=[".jsonl", ".json", ".csv", ".tsv"],
                             type="filepath", visible=False, height=100)
            with gr.Row():
                rows = gr.Slider(1, 200, value=20, step=1, label="Rows", elem_id="grains-eval-rows")
                offset = gr.Number(value=24, precision=0, minimum=0, label="First row", min_width=90)
            gr.Markdown("The shipped vector was built from TruthfulQA rows 0–23: evaluate from row 24 on.",
                        elem_classes=["grains-muted"])
            use_vector = gr.Checkbox(value=True,
                                     label="Also evaluate steered (the Steer tab's vector, layer, strength)")
            length_normalize = gr.Checkbox(value=False, label="Length-normalise answer log-probs")
            evaluate_button = gr.Button("Evaluate", variant="primary", elem_id="grains-evaluate")
        with gr.Column(scale=3, min_width=420):
            summary = gr.HTML(elem_id="grains-eval-summary", elem_classes=["grains-card"])
            csv_button = gr.DownloadButton("Download per-item results (CSV)", size="sm", interactive=False)
            with gr.Accordion("Per-item results", open=False):
                items = gr.Dataframe(headers=ITEM_HEADERS, interactive=False, wrap=True)
    gr.Markdown("### Layer × strength sweep")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            layers = gr.Textbox(label="Layers (blank: the vector's candidate layers)", placeholder="e.g. 3, 6, 9, 12",
                                max_lines=1, elem_id="grains-sweep-layers")
            strengths = gr.Textbox("0.1, 0.25, 0.5", label="Strengths", max_lines=1, elem_id="grains-sweep-strengths")
            gr.Markdown("Each cell scores every row with the vector at that layer and strength; '*' marks cells "
                        "whose 95% interval of the gain excludes 0.", elem_classes=["grains-muted"])
            sweep_button = gr.Button("Run sweep", elem_id="grains-sweep")
        with gr.Column(scale=3, min_width=420):
            plot = gr.Plot(label="Accuracy gain", elem_id="grains-sweep-plot")
            sweep_note = gr.HTML()
            sweep_csv = gr.DownloadButton("Download sweep (CSV)", size="sm", interactive=False)

    dataset.change(lambda name: gr.update(visible=name == UPLOAD), inputs=dataset, outputs=upload, queue=False,
                   api_visibility="private")

    @guarded
    def evaluate_ui(session: Session, name: str, up: str | None, n: Any, first: Any, steered: bool, layer: Any,
                    strength: Any, ln: bool, progress: gr.Progress = gr.Progress()) -> list[Any]:
        if steered and session.vector is None:
            warn("No steering vector in this session: evaluating the unsteered model only.")
            steered = False
        result = run_evaluation(session, name, up, n, first, steered, layer, strength, ln,
                                progress=lambda f, m: progress(min(max(f, 0.0), 1.0), desc=m))
        return [result_html(result), items_table(result), gr.update(value=evaluation_csv(result), interactive=True)]

    evaluate_button.click(evaluate_ui, inputs=[state, dataset, upload, rows, offset, use_vector, steer.layer,
                                               steer.strength, length_normalize],
                          outputs=[summary, items, csv_button], concurrency_id=MODEL_QUEUE, api_visibility="private")

    @guarded
    def sweep_ui(session: Session, name: str, up: str | None, n: Any, first: Any, lay: str, st: str,
                 progress: gr.Progress = gr.Progress()) -> list[Any]:
        result = run_sweep(session, name, up, n, first, lay, st,
                           progress=lambda f, m: progress(min(max(f, 0.0), 1.0), desc=m))
        fig = sweep_heatmap(result["layers"], result["strengths"], [[v * 100 for v in row] for row in result["values"]],
                            significant=result["significant"], title="Accuracy gain over unsteered (points)",
                            value_label="gain (points)")
        note = note_html(f"Unsteered accuracy {result['accuracy_unsteered']:.1%} on {result['n']} rows "
                         f"({esc(result['dataset'])}). Best cell: {best_cell(result)}.", "info")
        csv_path = write_csv(SWEEP_HEADERS, sweep_rows(result), "grains_sweep")
        return [fig, note, gr.update(value=csv_path, interactive=True)]

    sweep_button.click(sweep_ui, inputs=[state, dataset, upload, rows, offset, layers, strengths],
                       outputs=[plot, sweep_note, sweep_csv], concurrency_id=MODEL_QUEUE, api_visibility="private")

    # API: /evaluate (dataset, file, rows, offset, steered, layer, strength) -> result JSON, per-item CSV
    with gr.Column(visible=False):
        api_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                  gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                  gr.Checkbox(value=True, label="steered"), gr.Number(value=0, label="layer"),
                  gr.Number(value=0.5, label="strength")]
        api_out = [gr.JSON(label="result"), gr.File(label="csv")]

    def api_evaluate(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, steered: bool,
                     layer: Any, strength: Any) -> tuple[dict, str]:
        """Accuracy unsteered and (steered=True) with this session's vector; p-value, CI, reading, per-item rows."""
        result = run_evaluation(session, dataset or (UPLOAD if file else "truthfulqa"), file, rows, offset, steered,
                                layer, strength)
        return result, evaluation_csv(result)

    api_endpoint(api_evaluate, [state, *api_in], api_out, "evaluate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                     gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                     gr.Textbox(value="", label="layers"), gr.Textbox(value="0.25, 0.5, 1", label="strengths")]
        api_sw_out = [gr.JSON(label="result"), gr.File(label="csv")]

    def api_sweep(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, layers: str,
                  strengths: str) -> tuple[dict, str]:
        """Accuracy gain of this session's vector over a layer x strength grid."""
        result = run_sweep(session, dataset or (UPLOAD if file else "truthfulqa"), file, rows, offset, layers,
                           strengths)
        return result, write_csv(SWEEP_HEADERS, sweep_rows(result), "grains_sweep")

    api_endpoint(api_sweep, [state, *api_sw_in], api_sw_out, "sweep")
    return EvaluatePanel(dataset=dataset, offset=offset)


def best_cell(result: dict) -> str:
    best = None
    for i, layer in enumerate(result["layers"]):
        for j, strength in enumerate(result["strengths"]):
            value = result["values"][i][j]
            if value is not None and (best is None or value > best[0]):
                best = (value, layer, strength, result["p_values"][i][j])
    if best is None:
        return "none"
    return f"layer {best[1]}, strength {best[2]:g}: {best[0] * 100:+.1f} points (p = {best[3]:.2g})"
