"""Evaluate: accuracy before and after steering (TruthfulQA MC, preference pairs, POPE-style probes) with an exact
McNemar p-value and the interval that inverts the same test (they never disagree), a one-line reading and the side
effects of the steered setting; a layer x strength sweep heatmap (Holm-corrected marks, "best of N"), effect against
side effect per strength; CSV downloads. Runs show rows done and an estimate of the time left, stop between rows on
Stop, and their results are marked outdated when an input they depend on changes (cleared on a model change)."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.app_state import Session, parse_numbers, scratch_dir
from components.charts import CORRECTION_NAMES, effect_side_effect_plot, sweep_heatmap
from components.common import (
    MODEL_QUEUE,
    api_endpoint,
    chosen_format,
    esc,
    fmt_float,
    guarded,
    note_html,
    prompt_format_dropdown,
    prompt_format_update,
    session_model,
    warn,
)
from components.compare_panel import outdated_html
from components.datasets import UPLOAD, check_kind_fits, dataset_choices, load_rows
from components.steering_panel import STRENGTH_HELP, SteeringPanel, require_vector, session_steering
from grains.errors import Cancelled, InputError
from grains.serialize import to_jsonable

DEFAULT_EVAL_DATASET = "sentiment_pairs"  # the shipped default vector's concept...
DEFAULT_EVAL_OFFSET = 160  # ...and the first row it was not built from (scripts/build_default_vector.py --rows)
KIND_LABELS = {"truthfulqa": "TruthfulQA multiple choice", "pairs": "preference pairs", "probes": "yes/no probes"}
MAX_SWEEP_CELLS = 60
STOP_FLAGS: dict[int, bool] = {}  # id(session) -> Stop pressed while this session's evaluation or sweep runs
EVAL_WAITING = '<div class="grains-placeholder">Press Evaluate.</div>'
SWEEP_WAITING = '<div class="grains-placeholder">Press Run sweep.</div>'


class EtaProgress:
    """Feeds gr.Progress from the library's (fraction, message) callback, adding the time elapsed and an estimate
    of the time left (elapsed / fraction x what is left; none before the first step). `first_eta` keeps the first
    estimate shown, to compare with the time the run took."""

    def __init__(self, progress: Any, clock: Any = time.perf_counter):
        self.progress, self.clock = progress, clock
        self.start = clock()
        self.first_eta: float | None = None

    def text(self, fraction: float, message: str) -> str:
        elapsed = self.clock() - self.start
        if 0 < fraction < 1:
            left = elapsed / fraction * (1 - fraction)
            if self.first_eta is None:
                self.first_eta = left
            return f"{message} · {elapsed:.0f} s elapsed, about {left:.0f} s left"
        return f"{message} · {elapsed:.0f} s elapsed"

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.progress is not None:
            self.progress(fraction, desc=self.text(fraction, message))


def run_evaluation(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any, steered: bool,
                   layer: Any, strength: Any, length_normalize: bool = False, progress: Any = None,
                   normalize: Any = True, prompt_format: Any = None, side_effects: bool = True,
                   should_stop: Any = None) -> dict:
    """Evaluate the session's model on a dataset, unsteered and (when `steered`) with the session's Steering
    (the Steer tab's layer, strength and keep-the-norm switch), with its side effects when steered."""
    from grains.evaluation import evaluate

    lm = session_model(session)
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    steering = session_steering(session, lm, layer, strength, normalize) if steered else None
    first = _first_row(offset)
    result = evaluate(lm, data, kind, steering, per_item=True, length_normalize=bool(length_normalize),
                      progress=progress, side_effects=bool(side_effects) and steering is not None,
                      prompt_format=chosen_format(prompt_format), should_stop=should_stop, first_row=first).to_dict()
    result["dataset"] = description
    for item, row in zip(result.get("items", []), data):
        item["question"] = getattr(row, "question", None) or getattr(row, "prompt", "")
    session.last_eval = {"dataset": dataset, "rows": len(data), "offset": first, "steered": steered,
                         "layer": layer, "strength": strength, "kind": kind, "normalize": bool(normalize),
                         "length_normalize": bool(length_normalize), "prompt_format": result.get("prompt_format")}
    return to_jsonable(result)


def _first_row(offset: Any) -> int:
    try:
        return max(0, int(float(offset or 0)))
    except (TypeError, ValueError):
        return 0


def run_sweep(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any, layers: str,
              strengths: str, progress: Any = None, normalize: Any = True, length_normalize: bool = False,
              prompt_format: Any = None, kl: bool = True, should_stop: Any = None) -> dict:
    """Accuracy gain over a layer x strength grid with the session's vector (the Steer tab's keep-the-norm switch,
    this tab's length normalisation and prompt format), Holm-corrected, with each cell's mean KL when `kl`."""
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
    steering = session_steering(session, lm, layer_list[0], strength_list[0], normalize)
    for value in strength_list[1:]:
        session_steering(session, lm, layer_list[0], value, normalize)  # every strength checked before running
    result = sweep(lm, data, kind, steering, layer_list, strength_list, progress=progress,
                   length_normalize=bool(length_normalize), kl=bool(kl), prompt_format=chosen_format(prompt_format),
                   should_stop=should_stop).to_dict()
    result["dataset"] = description
    result["prompt_format"] = lm.with_format(chosen_format(prompt_format)).prompt_format
    return to_jsonable(result)


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
    setting = result.get("steering") or {}
    norm = "" if setting.get("normalize", True) else ", norm not kept"
    extras = [f"prompt format {result['prompt_format']}"] if result.get("prompt_format") else []
    if result.get("length_normalization"):
        extras.append("length-normalised log-probs")
    head = (f"<div class='grains-muted'>{esc(KIND_LABELS.get(kind, kind))} · {esc(result.get('dataset', ''))} · "
            f"n = {result.get('n')}" + (f" · layer {esc(_layers(result.get('layer')))}, strength "
                                        f"{result.get('strength'):g}{norm}" if steered else " · unsteered only")
            + "".join(f" · {esc(e)}" for e in extras) + "</div>")
    table = ("<table class='grains-summary'><tr><th></th><th>unsteered</th><th>steered</th><th>change</th></tr>"
             + "".join(rows) + "</table>")
    if not steered:
        return head + table
    p = result.get("p_value")
    kind_note = "ok" if p is not None and p < 0.05 and (result.get("gain") or 0) > 0 else "info"
    changed = (result.get("only_unsteered_correct") or 0) + (result.get("only_steered_correct") or 0)
    reading = note_html(f"<b>{esc(result.get('reading', ''))}</b><br>{interval_sentence(result, changed)}", kind_note)
    margin_note = note_html(esc(result["margin_note"]), "info") if result.get("margin_note") else ""
    bias = ""
    dist = result.get("answer_distribution") or {}
    if dist and max(dist.values()) >= 0.8:
        top = max(dist, key=dist.get)
        bias = note_html(f"Steered, the model answers {esc(top)} {dist[top]:.0%} of the time: an accuracy change may "
                         "come from a shifted answer bias rather than better answers.", "warn")
    return head + table + reading + margin_note + bias + side_effects_note(result)


def interval_sentence(result: dict, changed: int) -> str:
    """One sentence saying what the p-value and the interval are, and why they agree."""
    if "McNemar" in str(result.get("gain_ci_method", "")):
        return (f"The p-value is the exact McNemar test on the {changed} item{'s' if changed != 1 else ''} whose "
                "answer changed between right and wrong; the 95% interval inverts that same test (exact, given how "
                "many items changed), so it excludes 0 exactly when p < 0.05.")
    return "Exact McNemar test on the items that changed; 95% paired-bootstrap interval of the accuracy gain."


def side_effects_note(result: dict) -> str:
    """The steered setting's side effects (KL on neutral prompts, repetition), beside the result."""
    side = result.get("side_effects")
    if not result.get("steered"):
        return ""
    if not side:
        return note_html("Side effects were not measured for this result.", "warn")
    if float(result.get("strength") or 0.0) == 0.0:
        return note_html(f"<b>Side effects:</b> none at strength 0 ({esc(side.get('reading', ''))}).", "info")
    kind = "warn" if side.get("within_budget") is False else "info"
    return note_html(f"<b>Side effects</b> (what this setting costs on neutral text): {esc(side.get('reading', ''))}."
                     , kind)


def items_table(result: dict) -> list[list[Any]]:
    """Per-item rows for the CSV, numbered by the dataset row (offset + i)."""
    out = []
    for item in result.get("items", []):
        out.append([item.get("row", item["index"]), item.get("question") or "", item.get("answer_unsteered"),
                    item.get("answer"), item.get("correct_unsteered"), item.get("correct"),
                    round(item.get("margin_unsteered") or 0.0, 3), round(item.get("margin") or 0.0, 3)])
    return out


ITEM_HEADERS = ["#", "question", "answer (unsteered)", "answer (steered)", "correct (unsteered)",
                "correct (steered)", "margin (unsteered)", "margin (steered)"]
ITEM_HTML_HEADERS = ["row", "question", "answer unsteered", "answer steered", "right", "margin"]


def items_html(result: dict) -> str:
    """The per-item table for the page: dataset row numbers, the question and both answers wrapped inside fixed
    columns (nothing off-screen), right/wrong before -> after and the margin before -> after."""
    rows = items_table(result)
    if not rows:
        return ""
    steered = bool(result.get("steered"))
    cell = "padding:3px 6px;vertical-align:top;border-bottom:1px solid #e5e7eb;"
    wrap = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;"

    def mark(ok: Any) -> str:
        return "✓" if ok else "✗"

    head = "".join(f'<th style="{cell}text-align:left;white-space:normal;word-break:normal;">{esc(h)}</th>'
                   for h in ITEM_HTML_HEADERS)  # headers wrap between words only
    body = []
    for row, question, ans_u, ans_s, ok_u, ok_s, m_u, m_s in rows:
        moved = steered and bool(ok_u) != bool(ok_s)
        style = "background:#ecfdf5;" if moved and ok_s else ("background:#fef2f2;" if moved else "")
        right = f"{mark(ok_u)} → {mark(ok_s)}" if steered else mark(ok_u)
        margin = f"{fmt_float(m_u, 2)} → {fmt_float(m_s, 2)}" if steered else fmt_float(m_u, 2)
        body.append(f'<tr style="{style}"><td style="{cell}text-align:right;">{esc(row)}</td>'
                    f'<td style="{cell}{wrap}">{esc(question)}</td><td style="{cell}{wrap}">{esc(ans_u)}</td>'
                    f'<td style="{cell}{wrap}">{esc(ans_s) if steered else "—"}</td>'
                    f'<td style="{cell}white-space:nowrap;">{right}</td>'
                    f'<td style="{cell}white-space:nowrap;">{margin}</td></tr>')
    cols = ('<colgroup><col style="width:52px"><col style="width:34%"><col><col><col style="width:62px">'
            '<col style="width:110px"></colgroup>')
    return (f'<div class="grains-items-table" style="max-width:100%;max-height:520px;overflow-y:auto;'
            f'overflow-x:hidden;"><table style="width:100%;table-layout:fixed;border-collapse:collapse;'
            f'font-size:0.9em;">{cols}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


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
    kl = result.get("kl")
    adjusted = result.get("p_values_adjusted") or [[None] * len(result["strengths"]) for _ in result["layers"]]
    for i, layer in enumerate(result["layers"]):
        for j, strength in enumerate(result["strengths"]):
            rows.append([layer, strength, result["values"][i][j], result["accuracy"][i][j],
                         result["margin_gain"][i][j], result["p_values"][i][j], adjusted[i][j],
                         result["significant"][i][j], kl[i][j] if kl else None])
    return rows


SWEEP_HEADERS = ["layer", "strength", "accuracy gain", "accuracy", "margin gain", "p value (raw)",
                 "p value (Holm-adjusted)", "significant (Holm, 0.05)", "mean KL on neutral prompts (nats)"]


def correction_name(result: dict) -> str:
    name = str(result.get("correction") or "uncorrected")
    return CORRECTION_NAMES.get(name, name)


def best_cell(result: dict) -> str:
    """The sweep's largest gain, always named with its "best of N" label (a maximum over cells, not an estimate)."""
    best = result.get("best_of_n")
    if not best or best.get("layer") is None:
        return "no steered cell was tested"
    adjusted = best.get("p_value_adjusted")
    p_text = f", {correction_name(result)}-adjusted p = {float(adjusted):.2g}" if adjusted is not None else ""
    return (f"{esc(best.get('label', 'best of N'))}: layer {esc(best['layer'])}, strength {float(best['strength']):g}, "
            f"{float(best.get('gain') or 0.0) * 100:+.1f} points{p_text} (the largest of the cells, biased upward; "
            "check it on other rows before trusting it)")


def sweep_note(result: dict) -> str:
    """The sweep's reading: unsteered accuracy, the correction and cell count, the significant cells, best of N."""
    tested = result.get("cells_tested", 0)
    significant = sum(bool(v) for row in result["significant"] for v in row)
    kind = "ok" if significant else "info"
    text = (f"Unsteered accuracy {result['accuracy_unsteered']:.1%} on {result['n']} rows "
            f"({esc(result['dataset'])}). Exact McNemar test per cell, {esc(correction_name(result))}-corrected over "
            f"{tested} cells tested (strength 0 is not tested): {significant} significant at 0.05. "
            f"Largest gain, {best_cell(result)}.")
    if all(float(v) == 0.0 for row in result["values"] for v in row):
        text = (f"<b>No cell moved:</b> at every layer and strength tried, accuracy on the {result['n']} rows is "
                f"exactly the unsteered {result['accuracy_unsteered']:.1%} (gain 0 in every cell), so the heatmap "
                "has one colour. Try larger strengths, other layers or another vector.<br>" + text)
        kind = "warn"
    return note_html(text, kind)


def side_effect_figure(result: dict, layer: Any) -> Any:
    """Accuracy gain against mean KL per strength, at the Steer tab's layer when it was swept (else the best-of-N
    layer), with the KL budget; None without KL."""
    from grains.side_effects import DEFAULT_KL_BUDGET

    if not result.get("kl"):
        return None
    layers = result["layers"]
    try:
        chosen = int(layer)
    except (TypeError, ValueError):
        chosen = None
    if chosen not in layers:
        chosen = (result.get("best_of_n") or {}).get("layer", layers[0])
    return effect_side_effect_plot(layers, result["strengths"], [[v * 100 for v in row] for row in result["values"]],
                                   result["kl"], budget=DEFAULT_KL_BUDGET, chosen_layer=chosen,
                                   effect_label="accuracy gain (points)",
                                   title=f"Effect against side effect per strength (layer {chosen})")


@dataclass
class EvaluatePanel:
    dataset: gr.Dropdown
    offset: gr.Number
    prompt_format: Any = None
    rows: Any = None
    length_normalize: Any = None
    results: list[Any] | None = None  # summary, items, csv, plot, sweep note, sweep csv, side-effect plot

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.dataset, self.prompt_format, *(self.results or [])]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
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
            upload = gr.File(label="Dataset file (JSONL/CSV)", file_types=[".jsonl", ".json", ".csv", ".tsv"],
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
        STOP_FLAGS[id(session)] = False
        return lambda: STOP_FLAGS.get(id(session), False)

    @guarded
    def evaluate_ui(session: Session, name: str, up: str | None, n: Any, first: Any, steered: bool, layer: Any,
                    strength: Any, ln: bool, norm: bool = True, fmt: Any = None,
                    progress: gr.Progress = gr.Progress()) -> list[Any]:
        if steered and session.vector is None:
            warn("No steering vector in this session: evaluating the unsteered model only.")
            steered = False
        meter = EtaProgress(progress)
        try:
            result = run_evaluation(session, name, up, n, first, steered, layer, strength, ln, progress=meter,
                                    normalize=norm, prompt_format=fmt, side_effects=True,
                                    should_stop=stop_flag(session))
        except Cancelled as exc:
            return [note_html(f"<b>{esc(exc)}</b> No result is shown for a stopped run; the model is unsteered "
                              "again.", "warn"), "", gr.update(value=None, interactive=False)]
        finally:
            STOP_FLAGS.pop(id(session), None)
        took = time.perf_counter() - meter.start
        timing = (f"<div class='grains-muted'>Took {took:.0f} s" + (
            f" (the first estimate, after one row, was {meter.first_eta:.0f} s left)" if meter.first_eta is not None
            else "") + ".</div>")
        return [result_html(result) + timing, items_html(result),
                gr.update(value=evaluation_csv(result), interactive=True)]

    def request_stop(session: Session) -> None:
        if id(session) in STOP_FLAGS:
            STOP_FLAGS[id(session)] = True  # polled before each row: the run ends with no hook left on

    eval_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")
    sweep_stop.click(request_stop, inputs=state, queue=False, api_visibility="private")

    evaluate_button.click(evaluate_ui, inputs=[state, dataset, upload, rows, offset, use_vector, steer.layer,
                                               steer.strength, length_normalize, steer.normalize, prompt_format],
                          outputs=[summary, items, csv_button], concurrency_id=MODEL_QUEUE, api_visibility="private")

    @guarded
    def sweep_ui(session: Session, name: str, up: str | None, n: Any, first: Any, lay: str, st: str,
                 norm: bool = True, ln: bool = False, fmt: Any = None, steer_layer: Any = None,
                 progress: gr.Progress = gr.Progress()) -> list[Any]:
        try:
            result = run_sweep(session, name, up, n, first, lay, st, progress=EtaProgress(progress), normalize=norm,
                               length_normalize=ln, prompt_format=fmt, kl=True, should_stop=stop_flag(session))
        except Cancelled as exc:
            return [None, note_html(f"<b>{esc(exc)}</b> No result is shown for a stopped sweep.", "warn"),
                    gr.update(value=None, interactive=False), None]
        finally:
            STOP_FLAGS.pop(id(session), None)
        fig = sweep_figure(result)
        csv_path = write_csv(SWEEP_HEADERS, sweep_rows(result), "grains_sweep")
        return [fig, sweep_note(result), gr.update(value=csv_path, interactive=True),
                side_effect_figure(result, steer_layer)]

    sweep_button.click(sweep_ui, inputs=[state, dataset, upload, rows, offset, layers, strengths, steer.normalize,
                                         length_normalize, prompt_format, steer.layer],
                       outputs=[plot, sweep_info, sweep_csv, side_plot], concurrency_id=MODEL_QUEUE,
                       api_visibility="private")

    # API: /evaluate (dataset, file, rows, offset, steered, layer, strength) -> result JSON, per-item CSV
    with gr.Column(visible=False):
        api_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                  gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                  gr.Checkbox(value=True, label="steered"), gr.Number(value=0, label="layer"),
                  gr.Number(value=0.5, label="strength"), gr.Checkbox(value=True, label="normalize"),
                  gr.Checkbox(value=False, label="length_normalize"), gr.Textbox(value="", label="prompt_format"),
                  gr.Checkbox(value=True, label="side_effects")]
        api_out = [gr.JSON(label="result"), gr.File(label="csv")]

    def api_evaluate(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, steered: bool,
                     layer: Any, strength: Any, normalize: bool = True, length_normalize: bool = False,
                     prompt_format: str = "", side_effects: bool = True) -> tuple[dict, str]:
        """Accuracy unsteered and (steered=True) with this session's vector; p-value, CI, reading, per-item rows,
        and when steered its side effects (result["side_effects"]). Strength -4..4; prompt_format raw/qa/chat."""
        result = run_evaluation(session, dataset or (UPLOAD if file else "truthfulqa"), file, rows, offset, steered,
                                layer, strength, bool(length_normalize), normalize=normalize is not False,
                                prompt_format=prompt_format, side_effects=side_effects is not False)
        return result, evaluation_csv(result)

    api_endpoint(api_evaluate, [state, *api_in], api_out, "evaluate")

    with gr.Column(visible=False):
        api_sw_in = [gr.Textbox(value="truthfulqa", label="dataset"), gr.File(label="file", type="filepath"),
                     gr.Number(value=20, label="rows"), gr.Number(value=0, label="offset"),
                     gr.Textbox(value="", label="layers"), gr.Textbox(value="0.25, 0.5, 1", label="strengths"),
                     gr.Checkbox(value=True, label="normalize"), gr.Checkbox(value=False, label="length_normalize"),
                     gr.Textbox(value="", label="prompt_format"), gr.Checkbox(value=True, label="kl")]
        api_sw_out = [gr.JSON(label="result"), gr.File(label="csv")]

    def api_sweep(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, layers: str,
                  strengths: str, normalize: bool = True, length_normalize: bool = False, prompt_format: str = "",
                  kl: bool = True) -> tuple[dict, str]:
        """Accuracy gain of this session's vector over a layer x strength grid: raw and Holm-adjusted p-values,
        "significant" (Holm), "cells_tested", "best_of_n" and, with kl, each cell's mean KL on neutral prompts."""
        result = run_sweep(session, dataset or (UPLOAD if file else "truthfulqa"), file, rows, offset, layers,
                           strengths, normalize=normalize is not False, length_normalize=bool(length_normalize),
                           prompt_format=prompt_format, kl=kl is not False)
        return result, write_csv(SWEEP_HEADERS, sweep_rows(result), "grains_sweep")

    api_endpoint(api_sweep, [state, *api_sw_in], api_sw_out, "sweep")
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


def sweep_figure(result: dict) -> Any:
    """The heatmap of accuracy gains: Holm-corrected marks, the number of cells tested, the best-of-N cell."""
    return sweep_heatmap(result["layers"], result["strengths"], [[v * 100 for v in row] for row in result["values"]],
                         significant=result["significant"], title="Accuracy gain over unsteered (points)",
                         value_label="gain (points)", cells_tested=result.get("cells_tested"),
                         correction=result.get("correction"), best=result.get("best_of_n"))

