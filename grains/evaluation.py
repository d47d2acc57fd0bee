"""Evaluation with and without a steering vector: TruthfulQA multiple choice, preference pairs, yes/no probes,
with per-item results, an exact McNemar p-value and a paired-bootstrap interval for the gain."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from grains.errors import InputError
from grains.scoring import resolve_image, response_logprobs, score_pair
from grains.steering import check_layers, check_strength, steer
from grains.vectors import SteeringVector

Progress = Callable[[float, str], None] | None
KINDS = ("truthfulqa", "pairs", "probes")


def _mc_item(lm: Any, q: Any, length_normalize: bool) -> dict[str, Any]:
    """MC1/MC2 as lm-eval defines them (summed log-likelihoods); with `length_normalize`, `correct`/`margin` use
    the per-token mean and the length-normalised MC1/MC2 are added under their own keys."""
    from grains import truthfulqa_metrics as tqm

    enc = lm.encode_prompt(q.prompt)
    k = len(q.choices)
    sums, counts = response_logprobs(lm, enc, list(q.choices) + list(q.mc2_choices))
    scores = [s / c if length_normalize else s for s, c in zip(sums, counts)]
    mc1 = scores[:k]
    best_other = max(s for i, s in enumerate(mc1) if i != q.label)
    pick = max(range(k), key=lambda i: mc1[i])
    item = {"correct": pick == q.label, "margin": mc1[q.label] - best_other, "answer": q.choices[pick],
            "mc1": tqm.mc1(sums[:k], q.label), "mc2": tqm.mc2(sums[k:], q.mc2_labels), "mc2_source": q.mc2_source}
    if length_normalize:
        item["mc1_length_normalized"] = tqm.mc1_length_normalized(sums[:k], counts[:k], q.label)
        item["mc2_length_normalized"] = tqm.mc2_length_normalized(sums[k:], counts[k:], q.mc2_labels)
    return item


def _pair_item(lm: Any, ex: Any, length_normalize: bool) -> dict[str, Any]:
    score = score_pair(lm, ex.prompt, ex.chosen, ex.rejected, image=getattr(ex, "image", None))
    margin = score.margin(length_normalize)
    return {"correct": margin > 0, "margin": margin, "answer": (ex.chosen if margin > 0 else ex.rejected).strip()}


def _probe_item(lm: Any, probe: Any, length_normalize: bool) -> dict[str, Any]:
    from grains.vlm.pope import score_yes_no

    lp_yes, lp_no = score_yes_no(lm, resolve_image(probe.image), probe.question)
    says_yes = lp_yes > lp_no
    truth_yes = probe.answer.strip().lower() == "yes"
    margin = (lp_yes - lp_no) if truth_yes else (lp_no - lp_yes)
    return {"correct": says_yes == truth_yes, "margin": margin, "answer": "yes" if says_yes else "no",
            "truth": "yes" if truth_yes else "no"}


_SCORERS = {"truthfulqa": _mc_item, "pairs": _pair_item, "probes": _probe_item}


def score_items(lm: Any, rows: Sequence[Any], kind: str, context: Callable[[], AbstractContextManager] | None = None,
                length_normalize: bool = False, progress: Progress = None, label: str = "") -> list[dict[str, Any]]:
    """Score every row, each inside `context()` (e.g. a steering hook)."""
    if kind not in KINDS:
        raise InputError(f"Unknown evaluation kind {kind!r}: use one of {', '.join(KINDS)}.")
    if not rows:
        raise InputError("There are no rows to evaluate.")
    scorer = _SCORERS[kind]
    items = []
    with lm.lock:
        for i, row in enumerate(rows):
            with (context() if context else nullcontext()):
                items.append(scorer(lm, row, length_normalize))
            if progress:
                progress((i + 1) / len(rows), f"{label}{i + 1}/{len(rows)}")
    return items


def _answer_distribution(items: list[dict[str, Any]]) -> dict[str, float] | None:
    """Share of each answer the model picks, when answers come from a small set (A/B letters, yes/no)."""
    counts = Counter(item["answer"] for item in items)
    if len(counts) > 6:
        return None
    return {answer: n / len(items) for answer, n in counts.most_common()}


def _probe_metrics(items: list[dict[str, Any]]) -> dict[str, float]:
    from grains.vlm.pope import probe_metrics

    metrics = probe_metrics([i["answer"] for i in items], [i["truth"] for i in items])
    return {key: metrics[key] for key in ("precision", "recall", "f1", "yes_ratio")}


def _summary(items: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    n = len(items)
    out: dict[str, Any] = {
        f"accuracy{suffix}": sum(i["correct"] for i in items) / n,
        f"margin{suffix}": sum(i["margin"] for i in items) / n,
    }
    if kind != "truthfulqa":  # A/B letters or yes/no: the bias that fakes significance
        out[f"answer_distribution{suffix}"] = _answer_distribution(items)
    if kind == "truthfulqa":
        out[f"mc1{suffix}"] = math.fsum(i["mc1"] for i in items) / n
        out[f"mc2{suffix}"] = math.fsum(i["mc2"] for i in items) / n
        fallback = sum(i["mc2_source"] != "mc2_targets" for i in items)
        out[f"mc2_answer_set{suffix}"] = "mc2_targets" if not fallback else (
            f"fallback (correct_answers + incorrect_answers, no mc2_targets) for {fallback} of {n} questions")
        for key in ("mc1_length_normalized", "mc2_length_normalized"):
            if key in items[0]:
                out[f"{key}{suffix}"] = math.fsum(i[key] for i in items) / n
    if kind == "probes":
        out.update({f"{k}{suffix}": v for k, v in _probe_metrics(items).items()})
    return out


def steering_context(lm: Any, vector: SteeringVector, layer: Any, strength: float | None,
                     normalize: bool = True) -> Callable[[], AbstractContextManager]:
    """A factory of steering contexts, checked once up front."""
    layers = check_layers(layer, lm.num_layers, vector)
    value = check_strength(vector.default_strength if strength is None else strength)
    return lambda: steer(lm, vector, layers, value, normalize=normalize)


def evaluate(lm: Any, rows: Sequence[Any], kind: str = "truthfulqa", vector: SteeringVector | None = None,
             layer: Any = None, strength: float | None = None, per_item: bool = False,
             length_normalize: bool = False, normalize: bool = True, progress: Progress = None) -> dict[str, Any]:
    """Accuracy (MC1/MC2, pairwise, or POPE metrics) unsteered and, with a vector, steered, with significance."""
    from grains.stats import significance_summary

    if vector is not None:
        vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers)
        context = steering_context(lm, vector, layer, strength, normalize)
    base_progress = (lambda f, m: progress(f * (0.5 if vector is not None else 1.0), m)) if progress else None
    unsteered = score_items(lm, rows, kind, None, length_normalize, base_progress, "unsteered ")
    result: dict[str, Any] = {"n": len(rows), "kind": kind}
    if vector is None:
        result.update(_summary(unsteered, kind, ""))
        result.update(_summary(unsteered, kind, "_unsteered"))
        steered = unsteered
    else:
        steer_progress = (lambda f, m: progress(0.5 + 0.5 * f, m)) if progress else None
        steered = score_items(lm, rows, kind, context, length_normalize, steer_progress, "steered ")
        result.update(_summary(steered, kind, ""))
        result.update(_summary(unsteered, kind, "_unsteered"))
        result["layer"] = check_layers(layer, lm.num_layers, vector)
        result["strength"] = vector.default_strength if strength is None else float(strength)
    stats = significance_summary([i["correct"] for i in unsteered], [i["correct"] for i in steered])
    result.update({"p_value": stats["p_value"], "gain_ci": stats["gain_ci"], "gain": stats["gain"],
                   "reading": stats["reading"], "steered": vector is not None})
    if per_item:
        result["items"] = [
            {"index": i, "correct_unsteered": u["correct"], "correct": s["correct"],
             "margin_unsteered": u["margin"], "margin": s["margin"], "answer_unsteered": u["answer"],
             "answer": s["answer"]}
            for i, (u, s) in enumerate(zip(unsteered, steered))
        ]
    return result


def sweep(lm: Any, rows: Sequence[Any], kind: str, vector: SteeringVector, layers: Sequence[int],
          strengths: Sequence[float], normalize: bool = True, progress: Progress = None) -> dict[str, Any]:
    """Accuracy gain for every layer x strength, with p-values and which cells' 95% interval excludes 0."""
    from grains.stats import significance_summary

    layers = check_layers(list(layers), lm.num_layers)
    strengths = [check_strength(s) for s in strengths]
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers)
    total = 1 + len(layers) * len(strengths)
    unsteered = score_items(lm, rows, kind)
    base_correct = [i["correct"] for i in unsteered]
    base_acc = sum(base_correct) / len(rows)
    base_margin = sum(i["margin"] for i in unsteered) / len(rows)
    gains, margins, p_values, significant, accuracy = [], [], [], [], []
    done = 1
    for layer in layers:
        row_gain, row_margin, row_p, row_sig, row_acc = [], [], [], [], []
        for strength in strengths:
            items = score_items(lm, rows, kind, steering_context(lm, vector, layer, strength, normalize))
            stats = significance_summary(base_correct, [i["correct"] for i in items])
            low, high = stats["gain_ci"]
            row_gain.append(stats["gain"])
            row_acc.append(stats["accuracy"])
            row_margin.append(sum(i["margin"] for i in items) / len(rows) - base_margin)
            row_p.append(stats["p_value"])
            row_sig.append(low > 0 or high < 0)
            done += 1
            if progress:
                progress(done / total, f"layer {layer}, strength {strength:g}")
        gains.append(row_gain)
        margins.append(row_margin)
        p_values.append(row_p)
        significant.append(row_sig)
        accuracy.append(row_acc)
    return {"layers": layers, "strengths": strengths, "metric": "accuracy gain", "values": gains,
            "accuracy": accuracy, "margin_gain": margins, "p_values": p_values, "significant": significant,
            "accuracy_unsteered": base_acc, "n": len(rows), "kind": kind}
