"""Evaluation with and without a steering vector: TruthfulQA multiple choice, preference pairs, yes/no probes,
with per-item results, an exact McNemar p-value and an interval for the gain that inverts the same test (so the two
never disagree). Long runs report progress per row and can be stopped between rows (`should_stop`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from grains.errors import Cancelled, InputError
from grains.item_scoring import BatchedItems, answers_of, batchable, mc_result, pair_result
from grains.reports import EvaluationReport, SweepResult
from grains.scoring import resolve_image, response_logprobs, score_pair
from grains.steering import Steering, SteeringLike, as_steering, check_layers, check_strength

if TYPE_CHECKING:
    from grains.models import LoadedModel

Progress = Callable[[float, str], None] | None
ShouldStop = Callable[[], bool] | None
# progress is counted in answers scored (a TruthfulQA row scores its MC1 and MC2 answers, a pair 2, a probe 1), so
# that the fraction done predicts the time left; measure_side_effects costs about as much as this many answers
# (measured on Gemma-3-270M, CPU: 20 TruthfulQA rows x 10.5 answers x 2 passes took 661 s, the side effects 543 s
# with one generate call per continuation; batching the 16 continuations into one call cut them to a third: 155 s ->
# 52 s, one thread)
SIDE_EFFECT_UNITS = 115.0


def _row_cost(kind: str, row: Any) -> float:
    if kind == "truthfulqa":
        return float(len(getattr(row, "choices", ())) + len(getattr(row, "mc2_choices", ()))) or 1.0
    return 2.0 if kind == "pairs" else 1.0
KINDS = ("truthfulqa", "pairs", "probes")


def _mc_item(lm: LoadedModel, q: Any, length_normalize: bool) -> dict[str, Any]:
    """MC1/MC2 as lm-eval defines them (summed log-likelihoods); with `length_normalize`, `correct`/`margin` use
    the per-token mean and the length-normalised MC1/MC2 are added under their own keys."""
    sums, counts = response_logprobs(lm, lm.encode_prompt(q.prompt), answers_of("truthfulqa", q))
    return mc_result(q, sums, counts, length_normalize)


def _pair_item(lm: LoadedModel, ex: Any, length_normalize: bool) -> dict[str, Any]:
    score = score_pair(lm, ex.prompt, ex.chosen, ex.rejected, image=getattr(ex, "image", None))
    return pair_result(ex, [score.logp_chosen, score.logp_rejected], [score.tokens_chosen, score.tokens_rejected],
                       length_normalize)


def _probe_item(lm: LoadedModel, probe: Any, length_normalize: bool) -> dict[str, Any]:
    from grains.vlm.pope import score_yes_no

    lp_yes, lp_no = score_yes_no(lm, resolve_image(probe.image), probe.question)
    says_yes = lp_yes > lp_no
    truth_yes = probe.answer.strip().lower() == "yes"
    margin = (lp_yes - lp_no) if truth_yes else (lp_no - lp_yes)
    return {"correct": says_yes == truth_yes, "margin": margin, "answer": "yes" if says_yes else "no",
            "truth": "yes" if truth_yes else "no"}


_SCORERS = {"truthfulqa": _mc_item, "pairs": _pair_item, "probes": _probe_item}


def score_items(lm: LoadedModel, rows: Sequence[Any], kind: str,
                context: Callable[[], AbstractContextManager] | None = None,
                length_normalize: bool = False, progress: Progress = None, label: str = "",
                should_stop: ShouldStop = None) -> list[dict[str, Any]]:
    """Score every row, each inside `context()` (e.g. a steering hook); `should_stop()` is polled before each row
    (outside the hook, so the model is left clean) and True raises `Cancelled`."""
    if kind not in KINDS:
        raise InputError(f"Unknown evaluation kind {kind!r}: use one of {', '.join(KINDS)}.")
    if not rows:
        raise InputError("There are no rows to evaluate.")
    scorer = _SCORERS[kind]
    items = []
    with lm.lock:
        for i, row in enumerate(rows):
            if should_stop and should_stop():
                raise Cancelled(f"Stopped by the user after {i} of {len(rows)} rows ({label.strip() or 'scoring'}).")
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


def steering_context(lm: LoadedModel, steering: Steering | None) -> Callable[[], AbstractContextManager] | None:
    """A factory of steering contexts for `score_items` (None when unsteered)."""
    if steering is None:
        return None
    return lambda: steering.apply(lm)


def evaluate(lm: LoadedModel, rows: Sequence[Any], kind: str = "truthfulqa", steering: SteeringLike = None,
             layer: Any = None, strength: float | None = None, per_item: bool = False,
             length_normalize: bool = False, normalize: bool = True, progress: Progress = None,
             side_effects: bool = False, prompt_format: str | None = None,
             allow_other_model: bool = False, should_stop: ShouldStop = None,
             first_row: int = 0, steerability: bool = False) -> EvaluationReport:
    """Accuracy (MC1/MC2, pairwise, or POPE metrics) unsteered and, with steering, steered, with significance.

    Args:
        lm: the loaded model.
        rows: MC questions, preference pairs or yes/no probes.
        kind: "truthfulqa", "pairs" or "probes".
        steering: a `Steering`, or a `SteeringVector` with `layer` and `strength` (default: its suggestions).
        layer: layer(s) for a bare vector.
        strength: strength for a bare vector.
        per_item: include every item's result.
        length_normalize: compare per-token log-probabilities (labelled in the result).
        normalize: keep each token's norm (bare vectors only).
        progress: called with (fraction, message).
        side_effects: also measure KL on neutral prompts and the repetition of greedy continuations.
        prompt_format: "raw", "qa" or "chat" (default: the model's).
        allow_other_model: accept a vector built for another model.
        should_stop: polled before every row and before the side effects; True raises `Cancelled` (no hook is
            left on the model).
        first_row: the dataset row of rows[0] (e.g. the offset it was loaded from), for the items' "row" numbers.
        steerability: with steering, also each item's margin slope over strength, the anti-steerable share and the
            agreement of the difference vectors (grains.steerability; TruthfulQA rows as best vs first incorrect).

    Returns:
        An EvaluationReport: the steered and unsteered metrics, `p_value` (exact McNemar), `gain_ci` (the exact
        interval that inverts the same test, `gain_ci_method`), `reading`, `margin_note` when accuracy and mean margin
        move in opposite directions, and with steering `steering` (the setting) and, when asked, `side_effects`.
        `to_dict()` is the flat form `eval --json` prints. Progress messages count rows ("unsteered 3/20"); the side
        effects come after the rows.

    Example:
        >>> report = grains.evaluate(lm, pairs, "pairs", steering, per_item=True, side_effects=True)
        >>> report.gain, report.gain_ci, report.p_value
        >>> report.show()
    """
    from grains.stats import significance_summary

    lm = lm.with_format(prompt_format)
    chosen = as_steering(lm, steering, layer, strength, normalize, allow_other_model)
    # progress in answers scored (see SIDE_EFFECT_UNITS), so that the fraction done predicts the time left
    done_after = [0.0]
    for row in rows:
        done_after.append(done_after[-1] + _row_cost(kind, row))
    per_pass = done_after[-1]
    passes = per_pass * (2 if chosen is not None else 1)
    side_units = SIDE_EFFECT_UNITS if side_effects and chosen is not None else 0.0
    total = passes + side_units

    def units(f: float) -> float:  # rows done (a fraction of one pass) -> answers scored
        return done_after[min(len(rows), max(0, round(f * len(rows))))]

    base_progress = (lambda f, m: progress(units(f) / total, m)) if progress else None
    batched = (BatchedItems(lm, rows, kind, chosen.layers if chosen else ()) if rows and batchable(lm, rows, kind)
               else None)
    if batched is not None:
        unsteered = batched.score(None, length_normalize, base_progress, "unsteered ", should_stop)
    else:
        unsteered = score_items(lm, rows, kind, None, length_normalize, base_progress, "unsteered ", should_stop)
    result: dict[str, Any] = {"n": len(rows), "kind": kind, "length_normalization": bool(length_normalize),
                              "prompt_format": lm.prompt_format}
    if chosen is None:
        result.update(_summary(unsteered, kind, ""))
        result.update(_summary(unsteered, kind, "_unsteered"))
        steered = unsteered
    else:
        steer_progress = (lambda f, m: progress((per_pass + units(f)) / total, m)) if progress else None
        if batched is not None:
            steered = batched.score(chosen, length_normalize, steer_progress, "steered ", should_stop)
        else:
            steered = score_items(lm, rows, kind, steering_context(lm, chosen), length_normalize, steer_progress,
                                  "steered ", should_stop)
        result.update(_summary(steered, kind, ""))
        result.update(_summary(unsteered, kind, "_unsteered"))
        result["layer"] = list(chosen.layers)
        result["strength"] = chosen.strength
        result["steering"] = chosen.to_dict()
    stats = significance_summary([i["correct"] for i in unsteered], [i["correct"] for i in steered], "mcnemar")
    result.update({"p_value": stats["p_value"], "gain_ci": stats["gain_ci"], "gain": stats["gain"],
                   "gain_ci_method": stats["gain_ci_method"], "reading": stats["reading"],
                   "only_unsteered_correct": stats["only_unsteered_correct"],
                   "only_steered_correct": stats["only_steered_correct"], "steered": chosen is not None})
    if chosen is not None:
        note = margin_accuracy_note(unsteered, steered)
        if note:
            result["margin_note"] = note
    if steerability and chosen is not None and kind in ("truthfulqa", "pairs") and len(rows) >= 2:
        from grains.data import truthfulqa_to_pairs
        from grains.steerability import steerability as measure_steerability

        info = measure_steerability(lm, truthfulqa_to_pairs(list(rows)) if kind == "truthfulqa" else rows, chosen,
                                    where="the evaluated items")
        result["steerability"] = info if per_item else {k: v for k, v in info.items() if k != "slopes"}
    if side_effects and chosen is not None:
        from grains.side_effects import measure_side_effects

        if should_stop and should_stop():
            raise Cancelled("Stopped by the user after the rows, before the side effects.")
        side_progress = (lambda f, m: progress((passes + f * side_units) / total, m)) if progress else None
        result["side_effects"] = measure_side_effects(lm, chosen, progress=side_progress,
                                                      should_stop=should_stop).to_dict()
    if per_item:
        result["items"] = [
            {"index": i, "row": first_row + i, "correct_unsteered": u["correct"], "correct": s["correct"],
             "margin_unsteered": u["margin"], "margin": s["margin"], "answer_unsteered": u["answer"],
             "answer": s["answer"]}
            for i, (u, s) in enumerate(zip(unsteered, steered))
        ]
    return EvaluationReport.from_dict(result)


def margin_accuracy_note(unsteered: Sequence[dict[str, Any]], steered: Sequence[dict[str, Any]]) -> str | None:
    """A plain sentence when accuracy and the mean margin move in opposite directions (None otherwise).

    Accuracy counts only the sign of each item's margin; the mean margin also weighs how far. So a few items that
    cross zero can raise accuracy while items already far on the wrong (or right) side move further and pull the
    mean down, and the other way round. The sentence gives the counts behind it.

    Args:
        unsteered: per-item results without steering ("correct", "margin").
        steered: per-item results with steering, same items.

    Returns:
        The sentence, or None when both move the same way (or either does not move).
    """
    n = len(unsteered)
    if not n:
        return None
    acc = sum(s["correct"] for s in steered) / n - sum(u["correct"] for u in unsteered) / n
    margin = sum(s["margin"] for s in steered) / n - sum(u["margin"] for u in unsteered) / n
    if acc == 0 or margin == 0 or (acc > 0) == (margin > 0):
        return None
    up = sum(s["margin"] > u["margin"] for u, s in zip(unsteered, steered))
    crossed_up = sum((not u["correct"]) and s["correct"] for u, s in zip(unsteered, steered))
    crossed_down = sum(u["correct"] and not s["correct"] for u, s in zip(unsteered, steered))
    drops = sorted((s["margin"] - u["margin"] for u, s in zip(unsteered, steered)))
    rises = drops[::-1]
    if acc > 0:
        return (f"Accuracy rose while the mean margin fell ({margin:+.2f}): accuracy counts only which answer wins, "
                f"the margin also how far. {crossed_up} item(s) crossed to the right answer and {crossed_down} to "
                f"the wrong one, while the margin grew on only {up} of {n} items; the largest drop was "
                f"{drops[0]:+.2f}, enough to pull the mean down.")
    return (f"Accuracy fell while the mean margin rose ({margin:+.2f}): accuracy counts only which answer wins, the "
            f"margin also how far. {crossed_down} item(s) crossed to the wrong answer and {crossed_up} to the right "
            f"one, while the margin grew on {up} of {n} items; the largest rise was {rises[0]:+.2f}, enough to lift "
            "the mean.")


def sweep(lm: LoadedModel, rows: Sequence[Any], kind: str, steering: Steering | Any, layers: Sequence[int],
          strengths: Sequence[float], normalize: bool = True, progress: Progress = None,
          length_normalize: bool = False, kl: bool = False, prompt_format: str | None = None,
          allow_other_model: bool = False, should_stop: ShouldStop = None) -> SweepResult:
    """Accuracy gain for every layer x strength, with p-values corrected for the number of cells (Holm).

    Args:
        lm: the loaded model.
        rows: the items.
        kind: "truthfulqa", "pairs" or "probes".
        steering: a `Steering` (its vector and normalize switch are used) or a `SteeringVector`.
        layers: layers to sweep.
        strengths: strengths to sweep (0 is the identity and is not a tested cell).
        normalize: keep each token's norm (bare vectors only).
        progress: called with (fraction, message).
        length_normalize: compare per-token log-probabilities.
        kl: also measure each cell's mean KL on neutral prompts (its side effect).
        prompt_format: "raw", "qa" or "chat" (default: the model's).
        allow_other_model: accept a vector built for another model.
        should_stop: polled before every row of every cell; True raises `Cancelled`.

    Returns:
        A SweepResult: per-cell "values" (accuracy gain), "accuracy", "margin_gain", "p_values" (exact McNemar, raw),
        "p_values_adjusted" (Holm), "significant" (adjusted p < 0.05), "cells_tested", "correction", "best_of_n"
        (the largest gain, labelled: a maximum over cells, not an estimate) and, with `kl`, "kl".

    Example:
        >>> result = grains.sweep(lm, rows, "pairs", vector, layers=[6, 8], strengths=[0.25, 0.5, 1.0], kl=True)
        >>> result.best_of_n["label"], result.significant
        >>> result.show()
    """
    from grains.stats import SIGNIFICANCE_LEVEL, holm_adjust, significance_summary

    lm = lm.with_format(prompt_format)
    layers = check_layers(list(layers), lm.num_layers)
    strengths = [check_strength(s) for s in strengths]
    if isinstance(steering, Steering):
        base_setting = steering
    else:
        base_setting = as_steering(lm, steering, layers[0], strengths[0] if strengths else 0.0, normalize,
                                   allow_other_model)
    if base_setting is None:
        raise InputError("A sweep needs a steering vector.")
    meter = None
    if kl:
        from grains.side_effects import kl_meter

        meter = kl_meter(lm, layers=layers)
    total = 1 + len(layers) * len(strengths)
    n_rows = len(rows)

    def cell_progress(done_cells: int, what: str) -> Progress:
        if not progress:
            return None
        return lambda f, m: progress((done_cells + f) / total, f"{what}: row {round(f * n_rows)}/{n_rows}")

    batched = BatchedItems(lm, rows, kind, layers) if rows and batchable(lm, rows, kind) else None

    def scored(cell: Steering | None, cell_bar: Progress) -> list[dict[str, Any]]:
        if batched is not None:
            return batched.score(cell, length_normalize, cell_bar, "", should_stop)
        return score_items(lm, rows, kind, steering_context(lm, cell), length_normalize, cell_bar,
                           should_stop=should_stop)

    unsteered = scored(None, cell_progress(0, f"cell 1/{total} unsteered"))
    base_correct = [i["correct"] for i in unsteered]
    base_acc = sum(base_correct) / len(rows)
    base_margin = sum(i["margin"] for i in unsteered) / len(rows)
    gains, margins, p_values, accuracy, kls = [], [], [], [], []
    done = 1
    for layer in layers:
        row_gain, row_margin, row_p, row_acc, row_kl = [], [], [], [], []
        for strength in strengths:
            cell = base_setting.at(lm, layer, strength)
            items = scored(cell, cell_progress(done, f"cell {done + 1}/{total} layer {layer}, strength {strength:g}"))
            stats = significance_summary(base_correct, [i["correct"] for i in items], "mcnemar")
            row_gain.append(stats["gain"])
            row_acc.append(stats["accuracy"])
            row_margin.append(sum(i["margin"] for i in items) / len(rows) - base_margin)
            row_p.append(stats["p_value"] if strength != 0 else None)
            if meter is not None:
                row_kl.append(meter.mean(cell))
            done += 1
            if progress:
                progress(done / total, f"layer {layer}, strength {strength:g}")
        gains.append(row_gain)
        margins.append(row_margin)
        p_values.append(row_p)
        accuracy.append(row_acc)
        kls.append(row_kl)
    tested = [(r, c) for r in range(len(layers)) for c in range(len(strengths)) if p_values[r][c] is not None]
    adjusted_flat = holm_adjust([p_values[r][c] for r, c in tested])
    adjusted: list[list[float | None]] = [[None] * len(strengths) for _ in layers]
    for (r, c), value in zip(tested, adjusted_flat):
        adjusted[r][c] = value
    significant = [[a is not None and a < SIGNIFICANCE_LEVEL for a in row] for row in adjusted]
    best = max(tested, key=lambda rc: gains[rc[0]][rc[1]], default=None)
    best_of_n = None if best is None else {
        "label": f"best of {len(tested)}", "layer": layers[best[0]], "strength": strengths[best[1]],
        "gain": gains[best[0]][best[1]], "p_value_adjusted": adjusted[best[0]][best[1]],
        "note": "the largest gain over the cells: biased upward, not an estimate"}
    out = {"layers": layers, "strengths": strengths, "metric": "accuracy gain", "values": gains,
           "accuracy": accuracy, "margin_gain": margins, "p_values": p_values, "p_values_adjusted": adjusted,
           "significant": significant, "correction": "holm", "cells_tested": len(tested), "best_of_n": best_of_n,
           "accuracy_unsteered": base_acc, "n": len(rows), "kind": kind,
           "length_normalization": bool(length_normalize), "normalize": base_setting.normalize}
    if meter is not None:
        out["kl"] = kls
    return SweepResult.from_dict(out)
