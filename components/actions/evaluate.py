"""Evaluate tab actions: accuracy unsteered and under one `Steering` (with its side effects), the layer x strength
sweep, the per-item and sweep CSV files, and a progress adapter with an estimate of the time left."""

from __future__ import annotations

import csv
import time
from typing import TYPE_CHECKING, Any

from components.datasets import check_kind_fits, load_rows
from components.inputs import chosen_format, first_row
from components.model_cache import session_model
from components.progress import ProgressEstimate
from components.session import Session, scratch_dir
from grains.serialize import to_jsonable

if TYPE_CHECKING:
    from grains.steering import Steering

STOP_FLAGS: dict[int, bool] = {}  # id(session) -> Stop pressed while this session's evaluation or sweep runs
ITEM_HEADERS = ["#", "question", "answer (unsteered)", "answer (steered)", "correct (unsteered)",
                "correct (steered)", "margin (unsteered)", "margin (steered)"]
SWEEP_HEADERS = ["layer", "strength", "accuracy gain", "accuracy", "margin gain", "p value (raw)",
                 "p value (Holm-adjusted)", "significant (Holm, 0.05)", "mean KL on neutral prompts (nats)"]


EVALUATION_PHASES = {"unsteered": "the steered rows", "steered": "the side effects on neutral prompts (KL, then "
                     "greedy continuations)"}


class EtaProgress(ProgressEstimate):
    """Feeds gr.Progress from the library's (fraction, message) callback with the time elapsed and the time left
    measured per row (components.common.ProgressEstimate), saying what runs after the last steered row; `first_eta`
    keeps the first estimate shown, to compare with the time the run took."""

    def __init__(self, progress: Any, clock: Any = time.perf_counter):
        super().__init__(lambda f, text: progress(f, desc=text) if progress is not None else None, clock=clock,
                         then=EVALUATION_PHASES)


def run_evaluation(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any,
                   steering: Steering | None, length_normalize: bool = False, progress: Any = None,
                   prompt_format: Any = None, side_effects: bool = True, should_stop: Any = None) -> dict:
    """Evaluate the session's model on a dataset, unsteered and (when `steering` is given) steered, with its side
    effects when steered; the run's settings are kept for Show code.

    Args:
        session: whose model.
        dataset: a shipped dataset's name, or components.datasets.UPLOAD.
        upload: the uploaded file (with UPLOAD).
        rows: how many rows.
        offset: the first row.
        steering: the checked setting, or None for unsteered only.
        length_normalize: length-normalise answer log-probs.
        progress: a (fraction, message) callback.
        prompt_format: raw / qa / chat (None: the model's).
        side_effects: measure the steered setting's side effects.
        should_stop: polled before each row; True raises Cancelled.

    Returns:
        The evaluation as JSON-safe data (per-item rows with their questions).
    """
    from grains.evaluation import evaluate

    lm = session_model(session)
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    first = first_row(offset)
    result = evaluate(lm, data, kind, steering, per_item=True, length_normalize=bool(length_normalize),
                      progress=progress, side_effects=bool(side_effects) and steering is not None,
                      prompt_format=chosen_format(prompt_format), should_stop=should_stop, first_row=first).to_dict()
    result["dataset"] = description
    for item, row in zip(result.get("items", []), data):
        item["question"] = getattr(row, "question", None) or getattr(row, "prompt", "")
    session.last_eval = {"model": session.model_name, "dataset": dataset, "rows": len(data), "offset": first,
                         "steered": steering is not None,
                         "layer": steering.layers[0] if steering else None,
                         "strength": steering.strength if steering else None, "kind": kind,
                         "normalize": steering.normalize if steering else True,
                         "length_normalize": bool(length_normalize), "prompt_format": result.get("prompt_format")}
    return to_jsonable(result)


def run_sweep(session: Session, dataset: str | None, upload: str | None, rows: Any, offset: Any, layers: list[int],
              steerings: list[Steering], progress: Any = None, length_normalize: bool = False,
              prompt_format: Any = None, kl: bool = True, should_stop: Any = None) -> dict:
    """Accuracy gain over `layers` x the Steerings' strengths with the session's vector (their keep-the-norm
    switch, this tab's length normalisation and prompt format), Holm-corrected, with each cell's mean KL when `kl`.

    Args:
        session: whose model.
        dataset, upload, rows, offset: which rows (as in `run_evaluation`).
        layers: the layers swept.
        steerings: one checked Steering per strength (components.inputs.sweep_grid); each cell moves the first.
        progress: a (fraction, message) callback.
        length_normalize: length-normalise answer log-probs.
        prompt_format: raw / qa / chat (None: the model's).
        kl: measure each cell's mean KL on neutral prompts.
        should_stop: polled between cells; True raises Cancelled.

    Returns:
        The sweep as JSON-safe data.
    """
    from grains.evaluation import sweep

    lm = session_model(session)
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    result = sweep(lm, data, kind, steerings[0], layers, [s.strength for s in steerings], progress=progress,
                   length_normalize=bool(length_normalize), kl=bool(kl), prompt_format=chosen_format(prompt_format),
                   should_stop=should_stop).to_dict()
    result["dataset"] = description
    result["prompt_format"] = lm.with_format(chosen_format(prompt_format)).prompt_format
    return to_jsonable(result)


def items_table(result: dict) -> list[list[Any]]:
    """Per-item rows for the CSV, numbered by the dataset row (offset + i)."""
    out = []
    for item in result.get("items", []):
        out.append([item.get("row", item["index"]), item.get("question") or "", item.get("answer_unsteered"),
                    item.get("answer"), item.get("correct_unsteered"), item.get("correct"),
                    round(item.get("margin_unsteered") or 0.0, 3), round(item.get("margin") or 0.0, 3)])
    return out


def write_csv(headers: list[str], rows: list[list[Any]], stem: str) -> str:
    """Write a CSV for download into a fresh scratch folder; returns its path."""
    folder = scratch_dir("eval-")
    path = folder / f"{stem}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(rows)
    return str(path)


def evaluation_csv(result: dict) -> str:
    """The per-item CSV of an evaluation; returns its path."""
    return write_csv(ITEM_HEADERS, items_table(result), "grains_evaluation")


def sweep_rows(result: dict) -> list[list[Any]]:
    """One CSV row per sweep cell: layer, strength, gain, accuracy, margin gain, p (raw, Holm), significant, KL."""
    rows = []
    kl = result.get("kl")
    adjusted = result.get("p_values_adjusted") or [[None] * len(result["strengths"]) for _ in result["layers"]]
    for i, layer in enumerate(result["layers"]):
        for j, strength in enumerate(result["strengths"]):
            rows.append([layer, strength, result["values"][i][j], result["accuracy"][i][j],
                         result["margin_gain"][i][j], result["p_values"][i][j], adjusted[i][j],
                         result["significant"][i][j], kl[i][j] if kl else None])
    return rows


def sweep_csv(result: dict) -> str:
    """The sweep's CSV; returns its path."""
    return write_csv(SWEEP_HEADERS, sweep_rows(result), "grains_sweep")
