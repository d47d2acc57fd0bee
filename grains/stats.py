"""Paired significance for steered vs unsteered accuracy: exact McNemar test and a paired bootstrap interval.

Both inputs are per-item correctness on the same items, in the same order. Accuracies and gains are fractions
(0.04 = 4 points); `describe_gain` prints them in points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def significance_summary(unsteered_correct: Sequence[bool], steered_correct: Sequence[bool]) -> dict:
    """Accuracies, gain, exact McNemar p-value, bootstrap 95% CI of the gain and a one-line reading."""
    u, s = _paired(unsteered_correct, steered_correct)
    acc_u, acc_s = float(u.mean()), float(s.mean())
    b, c = discordant_counts(u, s)
    p_value = mcnemar_exact(u, s)
    ci = paired_bootstrap_ci(u, s)
    return {
        "n": int(u.size),
        "accuracy_unsteered": acc_u,
        "accuracy": acc_s,
        "gain": acc_s - acc_u,
        "only_unsteered_correct": b,
        "only_steered_correct": c,
        "p_value": p_value,
        "gain_ci": [ci[0], ci[1]],
        "reading": describe_gain(acc_u, acc_s, ci, p_value),
    }
