"""Honest choice of layer and strength: cross-validation to choose, a held-out split to claim a win.

The choice: k-fold cross-validation over a layer x strength grid on the mean log-probability margin of held-out
pairs, vectors rebuilt without the fold that scores them, strength 0 (unsteered) always a candidate. The maximum
over the grid is a "best of N" figure and is biased upward (the winner's curse), so it is never the estimate.

The claim: a held-out split. The items are split once, at random, into a selection half and a claim half
(`CLAIM_SHARE`). The whole choice (inner cross-validation over the grid) and the vector that scores the claim
half are made from the selection half only; the chosen cell is then scored once on the claim half. Given that
vector, the claim items' gains are independent and exchangeable (none of them helped build the vector or make the
choice), so the paired sign-flip test on them, and the interval that inverts it, are valid: the estimate, the
interval and the p-value all come from the same held-out gains. A win is claimed only when that estimate is
positive and the test rejects "no gain" at alpha = 0.05; otherwise the suggested strength is 0.

Why not a test on every item: in (nested) cross-validation each item's label helps build the vector that scores
the items of the other folds, so out-of-fold gains are positively correlated through the vector; a paired test
that treats them as independent claimed false wins in 5.5-11% of simulated null trials with a CAA-like vector
(nominal 2.5% for "mean > 0 and p < 0.05"). A variance correction (Nadeau-Bengio) only approximates that
correlation and is very conservative for k-fold; the held-out split is exactly valid at the cost of power
(scripts/crossval_null_study.py measures both). The nested cross-validation estimate (every item scored once by a
choice that never saw it) is still reported, labelled, as a second unbiased figure without a test. With fewer
than `min_items_for_claim()` items no claim is tested: "too few items to test: at least N needed".
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grains.claim_split import CLAIM_ESTIMATE, CLAIM_SHARE, claim_split, min_items_for_claim, too_few_items
from grains.errors import Cancelled
from grains.stats import SIGNIFICANCE_LEVEL, margin_gain_summary, significance_summary

Cell = tuple[int, float]
__all__ = ["CLAIM_SHARE", "CrossValidation", "claim_split", "coarse_strength", "cross_validate", "make_folds",
           "min_items_for_claim", "too_few_items"]
def make_folds(n: int, folds: int, seed: int = 0) -> list[list[int]]:
    """Split 0..n-1 into `folds` disjoint, shuffled, near-equal folds."""
    return _split(list(range(n)), folds, seed)


def _split(items: list[int], folds: int, seed: int) -> list[list[int]]:
    order = list(items)
    random.Random(seed).shuffle(order)
    folds = max(1, min(folds, len(order)))
    return [sorted(order[i::folds]) for i in range(folds)]


@dataclass
class CrossValidation:
    """The chosen layer and strength, the held-out estimate of its gain with its test, and the whole table.

    `margin_gain` is the mean log-prob margin gain on the `claim_n` held-out claim items (the choice and the vector
    that scored them were made from the other items only), with `margin_gain_ci` (None when there are fewer than
    `min_items` rows: too few to test) and `p_value` from a paired sign-flip test on those same gains;
    `beats_unsteered` is True only when that test rejects "no gain" at alpha = 0.05 and the estimate is positive.
    `accuracy*` are on the claim items too. `nested_margin_gain` is the nested cross-validation estimate over every
    item (unbiased, but with no test: its folds are coupled through the vector). `best_of_n` is the maximum over
    the grid in the plain cross-validation: biased upward, shown only with that label.
    """

    layer: int
    strength: float
    margin_gain: float
    margin_gain_ci: list[float] | None
    p_value: float
    accuracy: float
    accuracy_unsteered: float
    accuracy_p_value: float
    beats_unsteered: bool
    folds: int
    best_of_n: dict[str, Any]
    table: list[dict[str, Any]] = field(default_factory=list)
    outer_choices: list[dict[str, Any]] = field(default_factory=list)
    excluded_cells: list[dict[str, Any]] = field(default_factory=list)
    test: str = ""
    note: str = ""
    claim_n: int = 0
    claim_choice: dict[str, Any] = field(default_factory=dict)
    nested_margin_gain: float | None = None
    min_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the keys `build --json` prints under "selection")."""
        return {"layer": self.layer, "strength": self.strength, "estimate": CLAIM_ESTIMATE,
                "cv_margin_gain": self.margin_gain, "cv_margin_gain_ci": self.margin_gain_ci,
                "claim_n": self.claim_n, "claim_choice": self.claim_choice, "min_items": self.min_items,
                "nested_margin_gain": self.nested_margin_gain,
                "p_value": self.p_value, "test": self.test, "alpha": SIGNIFICANCE_LEVEL,
                "cv_accuracy": self.accuracy, "cv_accuracy_unsteered": self.accuracy_unsteered,
                "cv_accuracy_p_value": self.accuracy_p_value, "beats_unsteered": self.beats_unsteered,
                "folds": self.folds, "best_of_n": self.best_of_n, "outer_choices": self.outer_choices,
                "excluded_cells": self.excluded_cells, "note": self.note, "table": self.table}


def coarse_strength(strengths: Sequence[float]) -> float:
    """The strength at which every layer is compared in the coarse search: the middle of the positive grid."""
    positive = sorted(s for s in strengths if s > 0)
    return positive[(len(positive) - 1) // 2]


@dataclass
class _Plan:
    """Which cells to score: all at once ("grid"), or a first stage and a refinement ("coarse")."""

    first: list[Cell]
    per_layer: dict[int, list[float]]
    coarse: bool
    refine_layers: int

    def refine(self, ranked_layers: list[int], first: set[Cell]) -> list[Cell]:
        if not self.coarse:
            return []
        return [(la, s) for la in ranked_layers[: self.refine_layers] for s in self.per_layer[la]
                if (la, s) not in first]

    @property
    def size(self) -> int:
        extra = 0
        if self.coarse:
            counts = sorted((len(v) - 1 for v in self.per_layer.values()), reverse=True)
            extra = sum(counts[: self.refine_layers])
        return len(self.first) + extra


def _plan(layers: Sequence[int], strengths: Sequence[float], search: str, refine_layers: int,
          allowed: Callable[[int, float], bool] | None) -> _Plan:
    positive = list(dict.fromkeys(s for s in strengths if s > 0))
    per_layer = {la: [s for s in positive if allowed is None or allowed(la, s)] for la in layers}
    per_layer = {la: ss for la, ss in per_layer.items() if ss}
    if search == "coarse" and positive:
        middle = coarse_strength(positive)
        first = [(la, min(ss, key=lambda s: (abs(s - middle), s))) for la, ss in per_layer.items()]
        return _Plan(first=first, per_layer=per_layer, coarse=True, refine_layers=refine_layers)
    return _Plan(first=[(la, s) for la, ss in per_layer.items() for s in ss], per_layer=per_layer, coarse=False,
                 refine_layers=0)


@dataclass
class _CVRun:
    """One plain cross-validation over a subset of items: per cell, each item's held-out margin gain."""

    gains: dict[Cell, dict[int, float]]
    fold_means: dict[Cell, list[float]]
    folds: list[list[int]]
    vectors: dict[int, Any]

    def mean(self, cell: Cell) -> float:
        return statistics.fmean(self.gains[cell].values())

    def best(self) -> Cell | None:
        """The cell with the largest mean held-out gain, or None when none beats strength 0 (gain 0)."""
        if not self.gains:
            return None
        cell = max(self.gains, key=lambda c: (self.mean(c), -c[1], -c[0]))
        return cell if self.mean(cell) > 0 else None


class _Runner:
    def __init__(self, build: Callable[[list[int]], Any], score: Callable[[Any, int | None, float, list[int]],
                 list[float]], base: dict[int, float], plan: _Plan, should_stop: Callable[[], bool] | None,
                 progress: Callable[[float, str], None] | None, total: int):
        self.build, self.score, self.base, self.plan = build, score, base, plan
        self.should_stop, self.progress, self.total, self.done = should_stop, progress, max(1, total), 0

    def tick(self, message: str) -> None:
        if self.should_stop and self.should_stop():
            raise Cancelled("Cancelled while choosing the layer and strength.")
        self.done += 1
        if self.progress:
            self.progress(min(1.0, self.done / self.total), message)

    def score_gains(self, vector: Any, cell: Cell, items: list[int]) -> list[float]:
        margins = self.score(vector, cell[0], cell[1], items) if vector is not None else [self.base[i] for i in items]
        return [m - self.base[i] for m, i in zip(margins, items)]

    def cross_validate(self, items: list[int], folds: int, seed: int, label: str) -> _CVRun:
        fold_sets = _split(items, folds, seed)
        run = _CVRun(gains={}, fold_means={}, folds=fold_sets, vectors={})

        def stage(cells: list[Cell]) -> None:
            for f, fold in enumerate(fold_sets):
                if f not in run.vectors:
                    held = set(fold)
                    train = [i for i in items if i not in held]
                    run.vectors[f] = self.build(train) if train else None
                for cell in cells:
                    self.tick(f"{label}: layer {cell[0]}, strength {cell[1]:g}")
                    gains = self.score_gains(run.vectors[f], cell, fold)
                    run.gains.setdefault(cell, {}).update(zip(fold, gains))
                    run.fold_means.setdefault(cell, []).append(statistics.fmean(gains))

        stage(self.plan.first)
        if self.plan.coarse:
            ranked = sorted({c[0] for c in self.plan.first},
                            key=lambda la: -max(run.mean(c) for c in self.plan.first if c[0] == la))
            stage(self.plan.refine(ranked, set(self.plan.first)))
        return run


def _table(run: _CVRun, base: dict[int, float], n_items: int) -> list[dict[str, Any]]:
    base_acc = sum(m > 0 for m in base.values()) / n_items
    rows = [{"layer": None, "strength": 0.0, "margin_gain": 0.0, "margin_gain_std": 0.0, "accuracy": base_acc}]
    for cell, per_item in run.gains.items():
        spread = statistics.pstdev(run.fold_means[cell]) if len(run.fold_means[cell]) > 1 else 0.0
        rows.append({"layer": cell[0], "strength": cell[1], "margin_gain": statistics.fmean(per_item.values()),
                     "margin_gain_std": spread,
                     "accuracy": sum((base[i] + g) > 0 for i, g in per_item.items()) / len(per_item)})
    return rows


def cross_validate(
    n_items: int,
    layers: Sequence[int],
    strengths: Sequence[float],
    build: Callable[[list[int]], Any],
    score: Callable[[Any, int | None, float, list[int]], list[float]],
    folds: int = 3,
    seed: int = 0,
    fallback_layer: int = 0,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float, str], None] | None = None,
    search: str = "grid",
    refine_layers: int = 2,
    allowed: Callable[[int, float], bool] | None = None,
    excluded_cells: list[dict[str, Any]] | None = None,
    claim_share: float = CLAIM_SHARE,
) -> CrossValidation:
    """Choose (layer, strength) by cross-validated mean margin; test the win on a held-out claim split.

    Args:
        n_items: how many items (indices 0..n_items-1).
        layers: candidate layers.
        strengths: candidate strengths (0 is always a candidate, as "unsteered").
        build: `build(train_indices)` returns a vector built from those items only.
        score: `score(vector, layer, strength, indices)` returns those items' margins under steering (vector None
            and strength 0 = unsteered).
        folds: folds of the outer and the inner cross-validation.
        seed: shuffling seed.
        fallback_layer: the layer suggested (at strength 0) when no cell is scored.
        should_stop: polled between cells; True raises Cancelled.
        progress: called with (fraction, message).
        search: "grid" scores every cell; "coarse" every layer at the middle strength, then every strength at the
            `refine_layers` best layers.
        refine_layers: layers refined by the coarse search.
        allowed: cells outside it (e.g. over a side-effect budget) are never scored or chosen.
        excluded_cells: a record of cells left out by `allowed`, kept in the result.
        claim_share: share of the items held out for the claim (see the module docstring).

    Returns:
        The CrossValidation: the choice (strength 0 unless the held-out claim wins), the held-out estimate with its
        interval and test, the nested estimate, and the cross-validation table with its "best of N".
    """
    if search not in ("grid", "coarse"):
        raise ValueError(f"Unknown search {search!r}: use 'grid' or 'coarse'.")
    everything = list(range(n_items))
    base = dict(zip(everything, score(None, None, 0.0, everything)))
    plan = _plan(layers, strengths, search, refine_layers, allowed)
    k = max(1, min(folds, n_items))
    outer_sets = _split(everything, k, seed)
    nested = k >= 2 and all(n_items - len(fold) >= 2 for fold in outer_sets)
    total = plan.size * k * (2 + (k if nested else 0)) + k + 1
    runner = _Runner(build, score, base, plan, should_stop, progress, total)

    top = runner.cross_validate(everything, k, seed, "cross-validation")
    table = _table(top, base, n_items)
    best_cell = top.best()
    steered_rows = [row for row in table if row["layer"] is not None]
    best_row = max(steered_rows, key=lambda r: r["margin_gain"], default=None)
    best_of_n = {"label": f"best of {len(steered_rows)}", "cells": len(steered_rows),
                 "layer": best_row["layer"] if best_row else None,
                 "strength": best_row["strength"] if best_row else 0.0,
                 "margin_gain": best_row["margin_gain"] if best_row else 0.0,
                 "accuracy": best_row["accuracy"] if best_row else table[0]["accuracy"],
                 "note": "the maximum over the grid in plain cross-validation: biased upward, not an estimate"}

    # Nested estimate: each outer fold's choice is made without it; outer fold f uses top's fold-f vector.
    outer_gain: dict[int, float] = {}
    outer_choices: list[dict[str, Any]] = []
    for f, fold in enumerate(outer_sets if nested else []):
        held = set(fold)
        inner_items = [i for i in everything if i not in held]
        inner = runner.cross_validate(inner_items, k, seed + 1 + f, f"nested estimate, outer fold {f + 1}/{k}")
        chosen = inner.best()
        runner.tick(f"nested estimate: scoring outer fold {f + 1}/{k}")
        if chosen is None:
            gains = [0.0] * len(fold)
        elif chosen in top.gains and all(i in top.gains[chosen] for i in fold):
            gains = [top.gains[chosen][i] for i in fold]
        else:
            gains = runner.score_gains(top.vectors[f], chosen, fold)
        outer_gain.update(zip(fold, gains))
        outer_choices.append({"fold": f, "layer": chosen[0] if chosen else None,
                              "strength": chosen[1] if chosen else 0.0, "n": len(fold),
                              "mean_gain": statistics.fmean(gains)})

    nested_mean = statistics.fmean(outer_gain[i] for i in everything) if outer_gain else None
    claim = _claim(runner, n_items, k, seed, claim_share)
    wins = claim.testable and claim.estimate["mean"] > 0 and claim.estimate["p_value"] < SIGNIFICANCE_LEVEL
    where = (f"held-out claim split: {len(claim.items)} items that made no choice and built no vector that scores "
             f"them")
    if wins and best_cell is not None:
        layer, strength = best_cell
        note = (f"Steering beats unsteered on items that took part in no choice ({where}): "
                f"{claim.estimate['reading']}. Chosen by plain cross-validation on every item: layer {layer}, "
                f"strength {strength:g} ({best_of_n['label']}: {best_of_n['margin_gain']:+.3f} nats, biased upward).")
    else:
        layer = best_cell[0] if best_cell else (best_row["layer"] if best_row else fallback_layer)
        strength = 0.0
        wins = False
        reason = (f"{where}: {claim.estimate['reading']}" if claim.testable else
                  f"{too_few_items(n_items, k, claim_share)}")
        note = (f"No layer and strength were shown to beat the unsteered model ({reason}); the suggested strength "
                f"is 0. The {best_of_n['label']} cell was layer {best_of_n['layer']}, strength "
                f"{best_of_n['strength']:g} ({best_of_n['margin_gain']:+.3f} nats, biased upward).")
    if nested_mean is not None:
        note += (f" Nested {k}-fold cross-validation estimate over every item: {nested_mean:+.3f} nats (no test: its "
                 "folds share items through the vector).")
    ci = claim.estimate["ci"]
    return CrossValidation(layer=int(layer), strength=float(strength), margin_gain=float(claim.estimate["mean"]),
                           margin_gain_ci=[float(x) for x in ci] if ci is not None else None,
                           p_value=float(claim.estimate["p_value"]), accuracy=float(claim.accuracy["accuracy"]),
                           accuracy_unsteered=float(claim.accuracy["accuracy_unsteered"]),
                           accuracy_p_value=float(claim.accuracy["p_value"]), beats_unsteered=bool(wins), folds=k,
                           best_of_n=best_of_n, table=table, outer_choices=outer_choices,
                           excluded_cells=list(excluded_cells or []), test=claim.estimate.get("test", ""), note=note,
                           claim_n=len(claim.items), claim_choice=claim.choice, nested_margin_gain=nested_mean,
                           min_items=min_items_for_claim(k, claim_share))


@dataclass
class _Claim:
    items: list[int]
    estimate: dict[str, Any]
    accuracy: dict[str, Any]
    choice: dict[str, Any]
    testable: bool


def _claim(runner: _Runner, n_items: int, k: int, seed: int, claim_share: float) -> _Claim:
    """Choose on the selection items only (cross-validation), build the vector from them, score the claim items."""
    select, held = claim_split(n_items, seed, claim_share)
    if n_items < min_items_for_claim(k, claim_share):
        base_acc = sum(m > 0 for m in runner.base.values()) / n_items
        return _Claim(held, {"mean": 0.0, "ci": None, "p_value": 1.0, "test": "", "reading":
                             too_few_items(n_items, k, claim_share)},
                      {"accuracy": base_acc, "accuracy_unsteered": base_acc, "p_value": 1.0}, {}, False)
    chosen = runner.cross_validate(select, k, seed + 977, "held-out claim: choosing on the selection items").best()
    runner.tick("held-out claim: scoring the claim items")
    gains = runner.score_gains(runner.build(select), chosen, held) if chosen else [0.0] * len(held)
    base_correct = [runner.base[i] > 0 for i in held]
    accuracy = significance_summary(base_correct, [runner.base[i] + g > 0 for i, g in zip(held, gains)], "mcnemar")
    choice = {"layer": chosen[0] if chosen else None, "strength": chosen[1] if chosen else 0.0,
              "selection_n": len(select), "claim_n": len(held)}
    estimate = margin_gain_summary(gains, seed=seed)
    if chosen is None:
        estimate["reading"] = "the choice made on the selection items was strength 0 (unsteered): no gain to test"
    return _Claim(held, estimate, accuracy, choice, True)
