"""Per-example steerability of a vector: which items it moves, which it moves the wrong way, and a warning sign
measured before steering.

Tan et al. (2024, "Analyzing the generalization and reliability of steering vectors") found that a vector's mean
effect hides a wide spread across items: many move little, and a sizeable share move the WRONG way
("anti-steerable"). Per item, the steerability is the least-squares slope of its margin (log P(chosen) -
log P(rejected), nats) over the steering strength, measured at a few strengths on both sides of 0; an item is
anti-steerable when that slope is negative. Braun et al. (2025, "Understanding (un)reliability of steering
vectors") found that steering is reliable when the per-example difference vectors agree: their mean pairwise cosine
similarity at the steered layer, which needs no steering at all, predicts it. Here the difference vector of an item
is h(prompt + chosen) - h(prompt + rejected) at the last token, at the output of the steered layer (CAA's
per-example difference).

Scores come from grains.prefix_cache (the unsteered pass once, each strength from the kept hidden states), so the
whole measure costs about one forward over the items plus a partial one per strength.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import InputError
from grains.prefix_cache import CachedRows, supports
from grains.scoring import pair_rows, score_pairs

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

STRENGTH_FRACTIONS = (-1.0, -0.5, 0.5, 1.0)  # times the scale strength, beside the unsteered 0


def item_slopes(strengths: Sequence[float], margins: Sequence[Sequence[float]]) -> list[float]:
    """Least-squares slope of each item's margin over strength.

    Args:
        strengths: the strengths, one per column.
        margins: per item, its margin at each strength.

    Returns:
        One slope per item (nats per unit of strength).

    Example:
        >>> item_slopes([-1, 0, 1], [[-2, 0, 2], [1, 1, 1]])
        [2.0, 0.0]
    """
    mean_s = statistics.fmean(strengths)
    spread = sum((s - mean_s) ** 2 for s in strengths)
    if spread == 0:
        raise InputError("Steerability needs at least two different strengths.")
    out = []
    for row in margins:
        mean_m = statistics.fmean(row)
        out.append(float(sum((s - mean_s) * (m - mean_m) for s, m in zip(strengths, row)) / spread))
    return out


def mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct rows of [n, d] (zero rows count as cosine 0).

    Args:
        vectors: one difference vector per row, n >= 2.

    Returns:
        The mean over the n(n-1)/2 pairs.

    Example:
        >>> mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        0.3333333333333333
    """
    n = vectors.shape[0]
    if n < 2:
        raise InputError("The agreement of difference vectors needs at least two items.")
    unit = vectors.double()
    unit = unit / unit.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    total = unit.sum(0)
    return float((total @ total - (unit * unit).sum()) / (n * (n - 1)))


def steerability(lm: LoadedModel, pairs: Sequence[Any], steering: Steering, scale: float | None = None,
                 where: str = "these items", cache: CachedRows | None = None) -> dict[str, Any]:
    """Per-item margin slopes over strength, the anti-steerable share and the difference vectors' agreement.

    Args:
        lm: the model.
        pairs: items with `prompt`, `chosen`, `rejected` (optionally `image`).
        steering: the vector and layer(s) (its strength sets the scale unless `scale` is given).
        scale: the largest strength measured (default: |steering.strength|, or 0.5 when that is 0).
        where: how the reading names the items (e.g. "the training examples (in-sample)").
        cache: a CachedRows of exactly `grains.scoring.pair_rows(lm, pairs)` already scored (the build's
            cross-validation keeps one): its unsteered scores and kept hidden states are reused.

    Returns:
        {"layer", "strengths", "n", "slopes", "mean_slope", "median_slope", "anti_steerable_share",
        "anti_steerable_n", "difference_cosine_mean" (None for a VLM), "reading"}.

    Example:
        >>> info = steerability(lm, pairs, Steering.create(lm, vector, 9, 0.5))
        >>> info["anti_steerable_share"], info["difference_cosine_mean"]
    """
    if len(pairs) < 2:
        raise InputError("Steerability needs at least two items.")
    top = abs(float(scale if scale is not None else steering.strength)) or 0.5
    strengths = [f * top for f in STRENGTH_FRACTIONS]
    layer = min(steering.layers)
    cosine: float | None = None
    if supports(lm) and all(getattr(p, "image", None) is None for p in pairs):
        cache = cache or CachedRows(lm, pair_rows(lm, pairs), layers=[layer])
        with lm.lock:
            margin_columns = [cache.margins()] + [cache.margins(steering.at(lm, strength=s)) for s in strengths]
        diffs = torch.stack([cache.last_hidden(layer, 2 * i).float() - cache.last_hidden(layer, 2 * i + 1).float()
                             for i in range(len(pairs))])
        cosine = mean_pairwise_cosine(diffs)
    else:
        margin_columns = [[s.margin() for s in score_pairs(lm, pairs, None)]]
        margin_columns += [[s.margin() for s in score_pairs(lm, pairs, steering.at(lm, strength=v))]
                           for v in strengths]
    all_strengths = [0.0, *strengths]
    per_item = [[column[i] for column in margin_columns] for i in range(len(pairs))]
    slopes = item_slopes(all_strengths, per_item)
    anti = sum(s < 0 for s in slopes)
    share = anti / len(slopes)
    reading = (f"On {where}: {anti} of {len(slopes)} items ({share:.0%}) move the wrong way as the strength grows "
               f"(anti-steerable); median margin slope {statistics.median(slopes):+.2f} nats per unit of strength, "
               f"measured at strengths {', '.join(f'{s:g}' for s in all_strengths)}")
    if cosine is not None:
        reading += f"; the per-example difference vectors agree with mean cosine {cosine:.2f} at layer {layer}"
    return {"layer": layer, "strengths": all_strengths, "n": len(slopes), "slopes": slopes,
            "mean_slope": statistics.fmean(slopes), "median_slope": statistics.median(slopes),
            "anti_steerable_share": share, "anti_steerable_n": anti, "difference_cosine_mean": cosine,
            "reading": reading + "."}
