"""Honest choice of layer and strength: k-fold cross-validation on the mean margin, with strength 0 a candidate.

Vectors are rebuilt without the fold that scores them; each item is scored once, by the vector of the fold that
held it out. When no candidate beats strength 0, the selection says so.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from grains.errors import Cancelled


def make_folds(n: int, folds: int, seed: int = 0) -> list[list[int]]:
    """Split 0..n-1 into `folds` disjoint, shuffled, near-equal folds."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    folds = max(1, min(folds, n))
    return [sorted(order[i::folds]) for i in range(folds)]


@dataclass
class Selection:
    """The chosen layer and strength, the whole table, and the cross-validated estimate."""

    layer: int
    strength: float
    margin_gain: float
    margin_gain_std: float
    accuracy: float
    accuracy_unsteered: float
    beats_unsteered: bool
    folds: int
    table: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "strength": self.strength, "cv_margin_gain": self.margin_gain,
                "cv_margin_gain_std": self.margin_gain_std, "cv_accuracy": self.accuracy,
                "cv_accuracy_unsteered": self.accuracy_unsteered, "beats_unsteered": self.beats_unsteered,
                "folds": self.folds, "note": self.note, "table": self.table}


def coarse_strength(strengths: Sequence[float]) -> float:
    """The strength at which every layer is compared in the coarse search: the middle of the positive grid."""
    positive = sorted(s for s in strengths if s > 0)
    return positive[(len(positive) - 1) // 2]


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
) -> Selection:
    """Pick (layer, strength) by held-out mean margin.

    `build(train_indices)` returns a vector built from those items only; `score(vector, layer, strength, indices)`
    returns the margins of those items (vector None and strength 0 = unsteered). `search="grid"` scores every
    layer x strength; `search="coarse"` scores every layer at the middle strength, then every strength at the
    `refine_layers` best layers (layers + refine_layers x (strengths - 1) cells instead of layers x strengths).
    """
    if search not in ("grid", "coarse"):
        raise ValueError(f"Unknown search {search!r}: use 'grid' or 'coarse'.")
    fold_sets = make_folds(n_items, folds, seed)
    everything = list(range(n_items))
    base = dict(zip(everything, score(None, None, 0.0, everything)))
    positive = [s for s in strengths if s > 0]
    if search == "coarse" and positive:
        middle = coarse_strength(positive)
        first_cells = [(la, middle) for la in layers]
        extra_cells = min(refine_layers, len(layers)) * (len(set(positive)) - 1)
    else:
        first_cells = [(la, s) for la in layers for s in positive]
        extra_cells = 0
    gains: dict[tuple[int, float], dict[int, float]] = {}
    fold_means: dict[tuple[int, float], list[float]] = {}
    vectors: dict[int, Any] = {}
    total = len(fold_sets) * max(1, len(first_cells) + extra_cells)
    done = 0

    def run_stage(cells: list[tuple[int, float]]) -> None:
        nonlocal done
        for f, fold in enumerate(fold_sets):
            held = set(fold)
            train = [i for i in everything if i not in held]
            if f not in vectors:
                vectors[f] = build(train) if train else None
            for key in cells:
                if should_stop and should_stop():
                    raise Cancelled("Cancelled while choosing the layer and strength.")
                layer, strength = key
                vector = vectors[f]
                margins = score(vector, layer, strength, fold) if vector is not None else [base[i] for i in fold]
                per_item = gains.setdefault(key, {})
                for i, m in zip(fold, margins):
                    per_item[i] = m - base[i]
                fold_means.setdefault(key, []).append(statistics.fmean(margins[j] - base[i]
                                                                       for j, i in enumerate(fold)))
                done += 1
                if progress:
                    progress(min(1.0, done / total), f"cross-validation: layer {layer}, strength {strength:g}")

    run_stage(first_cells)
    if search == "coarse" and positive:
        ranked = sorted(layers, key=lambda la: -statistics.fmean(gains[(la, middle)].values()))
        run_stage([(la, s) for la in ranked[:refine_layers] for s in dict.fromkeys(positive) if s != middle])
    base_acc = sum(m > 0 for m in base.values()) / n_items
    table = [{"layer": None, "strength": 0.0, "margin_gain": 0.0, "margin_gain_std": 0.0, "accuracy": base_acc}]
    for (layer, strength), per_item in gains.items():
        acc = sum((base[i] + g) > 0 for i, g in per_item.items()) / n_items
        spread = statistics.pstdev(fold_means[(layer, strength)]) if len(fold_means[(layer, strength)]) > 1 else 0.0
        table.append({"layer": layer, "strength": strength, "margin_gain": statistics.fmean(per_item.values()),
                      "margin_gain_std": spread, "accuracy": acc})
    best = max(table, key=lambda row: row["margin_gain"])
    if best["strength"] == 0.0 or best["margin_gain"] <= 0:
        return Selection(layer=fallback_layer, strength=0.0, margin_gain=0.0, margin_gain_std=0.0,
                         accuracy=base_acc, accuracy_unsteered=base_acc, beats_unsteered=False, folds=len(fold_sets),
                         table=table, note="No layer and strength beat the unsteered model in cross-validation; "
                                           "the suggested strength is 0.")
    return Selection(layer=best["layer"], strength=best["strength"], margin_gain=best["margin_gain"],
                     margin_gain_std=best["margin_gain_std"], accuracy=best["accuracy"], accuracy_unsteered=base_acc,
                     beats_unsteered=True, folds=len(fold_sets), table=table,
                     note=f"Cross-validated over {len(fold_sets)} folds: mean margin +{best['margin_gain']:.3f} "
                          f"(fold spread {best['margin_gain_std']:.3f}).")
