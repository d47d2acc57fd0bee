"""Paired significance for steered vs unsteered accuracy: exact McNemar test and a paired bootstrap interval.

Both inputs are per-item correctness on the same items, in the same order. Accuracies and gains are fractions
(0.04 = 4 points); `describe_gain` prints them in points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from grains.errors import InputError

SIGNIFICANCE_LEVEL = 0.05
_BOOTSTRAP_CHUNK_CELLS = 4_000_000  # resampled indices held in memory at once


def _as_bools(values: Sequence[bool], what: str) -> np.ndarray:
    """Per-item correctness as a 1-D bool array; only True/False (or 0/1) are accepted."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{what} must be a flat list of True/False values.")
    if arr.dtype == bool:
        return arr
    if arr.size and (arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all()):
        raise InputError(f"{what} must hold only True/False (or 0/1) values.")
    return arr.astype(bool)


def _paired(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    u = _as_bools(unsteered_correct, "unsteered_correct")
    s = _as_bools(steered_correct, "steered_correct")
    if u.shape != s.shape:
        raise InputError(f"The two runs must score the same items: {u.size} unsteered vs {s.size} steered results.")
    if u.size == 0:
        raise InputError("There are no scored items to compare.")
    return u, s


def discordant_counts(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool]) -> tuple[int, int]:
    """(b, c): items right only unsteered, items right only steered."""
    u, s = _paired(unsteered_correct, steered_correct)
    return int(np.sum(u & ~s)), int(np.sum(~u & s))


def mcnemar_exact(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value: binomial test of b vs c at p = 0.5; 1.0 without discordant pairs."""
    b, c = discordant_counts(unsteered_correct, steered_correct)
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integer arithmetic until the final division


def paired_bootstrap_ci(
    unsteered_correct: Sequence[bool],
    steered_correct: Sequence[bool],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval for the accuracy gain (steered - unsteered), resampling items in pairs."""
    u, s = _paired(unsteered_correct, steered_correct)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise InputError(f"n_resamples must be a whole number of at least 1, got {n_resamples!r}.")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {confidence!r}.")
    diff = s.astype(np.int8) - u.astype(np.int8)
    n = diff.size
    rng = np.random.default_rng(seed)
    gains = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        gains[start:stop] = diff[idx].mean(axis=1, dtype=np.float64)
    alpha = 1 - confidence
    low, high = np.quantile(gains, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _format_p(p_value: float) -> str:
    if p_value < 0.001:
        return "p < 0.001"
    if p_value < 0.01:
        return f"p = {p_value:.3f}"
    return f"p = {p_value:.2f}"


def describe_gain(
    acc_unsteered: float, acc_steered: float, ci: Sequence[float], p_value: float, confidence: float = 0.95
) -> str:
    """One plain line, e.g. "+4.0 points, 95% CI -2.0 to +10.0: could be chance (p = 0.41)"."""
    gain = (acc_steered - acc_unsteered) * 100
    low, high = (x * 100 for x in ci)
    verdict = "unlikely to be chance" if p_value < SIGNIFICANCE_LEVEL else "could be chance"
    level = f"{confidence * 100:g}%"
    return f"{gain:+.1f} points, {level} CI {low:+.1f} to {high:+.1f}: {verdict} ({_format_p(p_value)})"


def min_items_to_test(alpha: float = SIGNIFICANCE_LEVEL) -> int:
    """The fewest paired items with which an exact two-sided sign test can give p < alpha: with m items the
    smallest possible p of the exact sign-flip test (and of the exact McNemar test on m discordant items) is
    2 * 0.5**m, reached when every difference has the same sign.

    Args:
        alpha: the significance level.

    Returns:
        The smallest such m (6 at alpha = 0.05, 8 at 0.01).
    """
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be between 0 and 1, got {alpha!r}.")
    m = 1
    while 2 * 0.5**m >= alpha:
        m += 1
    return m


def too_few_reading(n: int, alpha: float = SIGNIFICANCE_LEVEL) -> str:
    """The sentence shown instead of an interval when `n` items can never reach p < alpha."""
    return f"too few items to test: at least {min_items_to_test(alpha)} needed (have {n})"


def _binomial_cdf(k: int, m: int, prob: float) -> float:
    """P(X <= k) for X ~ Binomial(m, prob)."""
    if k < 0:
        return 0.0
    if k >= m:
        return 1.0
    return math.fsum(math.comb(m, i) * prob**i * (1 - prob) ** (m - i) for i in range(k + 1))


def _clopper_pearson(c: int, m: int, confidence: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion c/m, found by bisection on the tails."""
    alpha = 1 - confidence

    def solve(tail: Callable[[float], float]) -> float:  # tail is increasing in prob; find tail(prob) = alpha / 2
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if tail(mid) < alpha / 2:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if c == 0 else solve(lambda q: 1 - _binomial_cdf(c - 1, m, q))  # P(X >= c | q)
    high = 1.0 if c == m else 1 - solve(lambda q: _binomial_cdf(c, m, 1 - q))  # P(X <= c | 1 - q)
    return low, high


MCNEMAR_INTERVAL = ("exact interval that inverts the same McNemar test (Clopper-Pearson on the share of changed "
                    "items that improved, given how many changed), so it excludes 0 exactly when p < 0.05")


def mcnemar_interval(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool],
                     confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the accuracy gain that agrees with the exact McNemar test by construction.

    Given the d = b + c items whose correctness changed, c (improved) ~ Binomial(d, pi) and the gain is
    d / n * (2 pi - 1). The exact Clopper-Pearson interval for pi excludes 1/2 exactly when the two-sided exact
    McNemar test (the binomial test of pi = 1/2) gives p < 1 - confidence, so the gain interval excludes 0
    exactly then too. It is conditional on d (the number of items that changed).

    Args:
        unsteered_correct: per-item correctness without steering.
        steered_correct: per-item correctness with steering, same items.
        confidence: e.g. 0.95.

    Returns:
        (low, high) for the gain in accuracy (a fraction); (0, 0) when no item changed.
    """
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {confidence!r}.")
    u, s = _paired(unsteered_correct, steered_correct)
    b, c = discordant_counts(u, s)
    d, n = b + c, int(u.size)
    if d == 0:
        return 0.0, 0.0
    low, high = _clopper_pearson(c, d, confidence)
    return d / n * (2 * low - 1), d / n * (2 * high - 1)


def significance_summary(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool],
                         interval: str = "bootstrap") -> dict:
    """Accuracies, gain, exact McNemar p-value, a 95% interval of the gain and a one-line reading.

    Args:
        unsteered_correct: per-item correctness without steering.
        steered_correct: per-item correctness with steering.
        interval: "bootstrap" (paired percentile bootstrap) or "mcnemar" (the exact interval that inverts the
            McNemar test, so interval and p-value always agree; see `mcnemar_interval`).

    Returns:
        {"n", "accuracy_unsteered", "accuracy", "gain", "only_unsteered_correct", "only_steered_correct",
        "p_value", "gain_ci", "gain_ci_method", "reading"}. With fewer than `min_items_to_test()` items no
        outcome can reach p < 0.05: `gain_ci` is then None and the reading says "too few items to test".
    """
    if interval not in ("bootstrap", "mcnemar"):
        raise InputError(f"interval must be 'bootstrap' or 'mcnemar', got {interval!r}.")
    u, s = _paired(unsteered_correct, steered_correct)
    acc_u, acc_s = float(u.mean()), float(s.mean())
    b, c = discordant_counts(u, s)
    p_value = mcnemar_exact(u, s)
    need = min_items_to_test()
    if u.size < need:  # no outcome could reach p < 0.05: no interval, the reason instead
        ci, reading = None, f"{(acc_s - acc_u) * 100:+.1f} points: {too_few_reading(int(u.size))}"
    else:
        ci = paired_bootstrap_ci(u, s) if interval == "bootstrap" else mcnemar_interval(u, s)
        reading = describe_gain(acc_u, acc_s, ci, p_value)
        if b + c < need:
            reading += f"; only {b + c} items changed, and at least {need} must change for a test at 5%"
    return {
        "n": int(u.size),
        "accuracy_unsteered": acc_u,
        "accuracy": acc_s,
        "gain": acc_s - acc_u,
        "only_unsteered_correct": b,
        "only_steered_correct": c,
        "p_value": p_value,
        "gain_ci": [ci[0], ci[1]] if ci is not None else None,
        "gain_ci_method": "paired percentile bootstrap" if interval == "bootstrap" else MCNEMAR_INTERVAL,
        "reading": reading,
    }


# ---------------------------------------------------------------- continuous paired gains (margins)

_EXACT_SIGN_FLIPS_UP_TO = 16  # 2**16 sign patterns are enumerated; more items use Monte Carlo
SIGN_FLIP_TEST = "paired sign-flip permutation test of the mean (two-sided)"


def _sign_matrix(n: int, n_resamples: int, seed: int) -> tuple[np.ndarray, bool]:
    """Rows of +-1: every pattern when n is small (exact test), else `n_resamples` random ones."""
    if n <= _EXACT_SIGN_FLIPS_UP_TO:
        codes = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)[None, :]
        return 1.0 - 2.0 * (codes & 1), True
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n_resamples, n), dtype=np.int8).astype(np.float64) * 2.0 - 1.0, False


def _flip_p(diffs: np.ndarray, signs: np.ndarray, exact: bool) -> float:
    observed = abs(diffs.sum())
    flipped = np.abs(signs @ diffs)
    hits = int(np.sum(flipped >= observed - 1e-12 * max(1.0, observed)))
    return hits / len(signs) if exact else (hits + 1) / (len(signs) + 1)


def _as_diffs(diffs: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(diffs), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError("There are no paired differences to test.")
    if not np.isfinite(arr).all():
        raise InputError("The paired differences must be finite numbers.")
    return arr


def sign_flip_test(diffs: Sequence[float], n_resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value for "the mean paired difference is 0", by flipping the signs of the differences.

    Exact (every sign pattern) up to 16 items, Monte Carlo with `n_resamples` patterns above. Valid whenever each
    difference is as likely to be negative as positive under the null (no normality assumed).

    Args:
        diffs: per-item differences, steered minus unsteered.
        n_resamples: random sign patterns for more than 16 items.
        seed: random seed.

    Returns:
        The p-value (1.0 when every difference is 0).
    """
    arr = _as_diffs(diffs)
    if not np.any(arr):
        return 1.0
    signs, exact = _sign_matrix(arr.size, n_resamples, seed)
    return float(min(1.0, _flip_p(arr, signs, exact)))


def sign_flip_interval(diffs: Sequence[float], confidence: float = 0.95, n_resamples: int = 20_000,
                       seed: int = 0) -> tuple[float, float]:
    """The interval of mean shifts mu that the sign-flip test does not reject: it excludes 0 exactly when
    `sign_flip_test` gives p < 1 - confidence (same sign patterns), so interval and test always agree.

    Args:
        diffs: per-item differences.
        confidence: e.g. 0.95.
        n_resamples: random sign patterns for more than 16 items.
        seed: random seed.

    Returns:
        (low, high) for the mean difference; (-inf, +inf) when there are too few items for the test to reject any
        shift (the set of shifts it does not reject is then the whole line).
    """
    arr = _as_diffs(diffs)
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {confidence!r}.")
    alpha = 1 - confidence
    mean = float(arr.mean())
    if arr.size < min_items_to_test(alpha):  # no sign pattern is rarer than alpha: no shift is ever rejected
        return -math.inf, math.inf
    if np.ptp(arr) == 0:
        return mean, mean
    signs, exact = _sign_matrix(arr.size, n_resamples, seed)
    flipped_sums, sign_sums, total, n = signs @ arr, signs.sum(axis=1), float(arr.sum()), arr.size

    def rejects(mu: float) -> bool:  # _flip_p(arr - mu, ...) without a matrix product per mu
        observed = abs(total - mu * n)
        hits = int(np.sum(np.abs(flipped_sums - mu * sign_sums) >= observed - 1e-12 * max(1.0, observed)))
        p = hits / len(signs) if exact else (hits + 1) / (len(signs) + 1)
        return p < alpha

    def edge(inside: float, outside: float) -> float:
        while not rejects(outside):  # widen until the test rejects (it does once |mu| outweighs the data)
            outside = inside + 2 * (outside - inside)
        for _ in range(40):
            middle = (inside + outside) / 2
            if rejects(middle):
                outside = middle
            else:
                inside = middle
        return inside

    span = float(np.ptp(arr))
    return edge(mean, float(arr.min()) - span), edge(mean, float(arr.max()) + span)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: adjusted p-values that control the family-wise error rate over all the tests.

    Args:
        p_values: the raw p-values, one per test (cell).

    Returns:
        Adjusted p-values in the same order; reject where adjusted p < alpha.
    """
    p = np.asarray(list(p_values), dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def describe_margin_gain(mean: float, ci: Sequence[float], p_value: float, confidence: float = 0.95) -> str:
    """One plain line for a mean log-probability margin gain, e.g.
    "+0.42 nats, 95% CI +0.10 to +0.75: unlikely to be chance (p = 0.01)"."""
    verdict = "unlikely to be chance" if p_value < SIGNIFICANCE_LEVEL else "could be chance"
    return (f"{mean:+.3f} nats, {confidence * 100:g}% CI {ci[0]:+.3f} to {ci[1]:+.3f}: {verdict} "
            f"({_format_p(p_value)})")


def margin_gain_summary(diffs: Sequence[float], seed: int = 0) -> dict:
    """Mean paired margin gain with its sign-flip p-value and the matching interval.

    Args:
        diffs: per-item margin gains (steered minus unsteered), each scored once.
        seed: random seed for the Monte Carlo sign patterns.

    Returns:
        {"n", "mean", "ci", "p_value", "test", "reading"}; with fewer than `min_items_to_test()` items no outcome
        can reach p < 0.05, so `ci` is None and the reading says "too few items to test: at least 6 needed".
    """
    arr = _as_diffs(diffs)
    p_value = sign_flip_test(arr, seed=seed)
    mean = float(arr.mean())
    if arr.size < min_items_to_test():
        return {"n": int(arr.size), "mean": mean, "ci": None, "p_value": p_value, "test": SIGN_FLIP_TEST,
                "reading": f"{mean:+.3f} nats: {too_few_reading(int(arr.size))}"}
    ci = sign_flip_interval(arr, seed=seed)
    return {"n": int(arr.size), "mean": mean, "ci": [ci[0], ci[1]], "p_value": p_value, "test": SIGN_FLIP_TEST,
            "reading": describe_margin_gain(mean, ci, p_value)}
