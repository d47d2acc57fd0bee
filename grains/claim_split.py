"""The held-out claim split of `cross_validate`: which items test a win, and how many rows a claim needs.

The choice of layer and strength and the vector that scores the claim items are made from the selection items
only, so the claim items' gains are exchangeable given that vector and a paired sign-flip test on them is exact
(see grains/crossval.py for why a test over every cross-validated item is not).
"""

from __future__ import annotations

import random

from grains.stats import SIGNIFICANCE_LEVEL, min_items_to_test

CLAIM_SHARE = 0.5  # share of the items held out for the claim (the rest make the choice and the vector)
CLAIM_ESTIMATE = "held-out claim split"


def _claim_size(n_items: int, claim_share: float) -> int:
    return int(n_items * claim_share)


def min_items_for_claim(folds: int = 3, claim_share: float = CLAIM_SHARE, alpha: float = SIGNIFICANCE_LEVEL) -> int:
    """The fewest items (rows) with which `cross_validate` can possibly claim a win at `alpha`.

    The claim is tested on the held-out claim items only (`claim_share` of them, rounded down) with an exact
    two-sided sign-flip test, which needs at least `min_items_to_test(alpha)` of them (6 at 5%), and the choice
    needs at least max(2, folds) selection items to cross-validate on. Below this count every build reports
    "too few items to test" instead of an interval, whatever the data.

    Args:
        folds: folds of the cross-validation (as passed to `cross_validate` / `build`).
        claim_share: share of the items held out for the claim.
        alpha: significance level of the claim.

    Returns:
        The smallest such number of items (12 with the defaults).

    Example:
        >>> min_items_for_claim(), min_items_for_claim(folds=5)
        (12, 12)
    """
    if not 0 < claim_share < 1:
        raise ValueError(f"claim_share must be between 0 and 1, got {claim_share!r}.")
    need, n = min_items_to_test(alpha), 2
    while _claim_size(n, claim_share) < need or n - _claim_size(n, claim_share) < max(2, folds):
        n += 1
    return n


def claim_split(n_items: int, seed: int = 0, claim_share: float = CLAIM_SHARE) -> tuple[list[int], list[int]]:
    """(selection items, claim items): one random split of 0..n_items-1, the claim part `claim_share` of them."""
    order = list(range(n_items))
    random.Random(seed + 7919).shuffle(order)
    m = _claim_size(n_items, claim_share)
    return sorted(order[m:]), sorted(order[:m])


def too_few_items(n_items: int, folds: int = 3, claim_share: float = CLAIM_SHARE) -> str:
    """The sentence shown instead of an interval when `n_items` rows cannot support a claim."""
    return f"too few items to test: at least {min_items_for_claim(folds, claim_share)} needed (have {n_items})"
