"""Tests for grains.stats: exact McNemar p-values against hand computation, paired bootstrap, readings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grains.errors import InputError
from grains.stats import (
    describe_gain,
    discordant_counts,
    mcnemar_exact,
    paired_bootstrap_ci,
    significance_summary,
)


def runs(both: int, only_unsteered: int, only_steered: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Build paired correctness lists with the given cell counts of the 2x2 table."""
    u = [True] * both + [True] * only_unsteered + [False] * only_steered + [False] * neither
    s = [True] * both + [False] * only_unsteered + [True] * only_steered + [False] * neither
    return u, s


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 5, 2 / 32),  # 0.0625
        (5, 0, 2 / 32),
        (1, 9, 2 * (1 + 10) / 1024),
        (9, 1, 2 * (1 + 10) / 1024),
        (2, 8, 2 * (1 + 10 + 45) / 1024),
        (3, 3, 1.0),  # 2 * P(X <= 3 | n=6) = 2 * 42/64 > 1 -> capped
        (1, 2, 1.0),  # 2 * (1 + 3) / 8 = 1
        (0, 1, 1.0),  # 2 * 1/2
        (0, 10, 2 / 1024),
    ],
)
def test_mcnemar_matches_hand_computed_values(b, c, expected):
    u, s = runs(both=7, only_unsteered=b, only_steered=c, neither=4)
    assert mcnemar_exact(u, s) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_without_discordant_pairs_is_one():
    assert mcnemar_exact([True, False, True], [True, False, True]) == 1.0
    assert mcnemar_exact([False] * 4, [False] * 4) == 1.0


def test_mcnemar_ignores_concordant_items():
    u1, s1 = runs(0, 1, 9, 0)
    u2, s2 = runs(500, 1, 9, 300)
    assert mcnemar_exact(u1, s1) == mcnemar_exact(u2, s2)


def test_mcnemar_large_n_is_finite_and_tiny():
    u, s = runs(0, 0, 2000, 0)
    p = mcnemar_exact(u, s)
    assert 0.0 <= p < 1e-300
    u, s = runs(0, 1000, 1000, 0)
    assert mcnemar_exact(u, s) == 1.0


def test_mcnemar_agrees_with_binomial_sum_for_many_tables():
    rng = np.random.default_rng(1)
    for _ in range(50):
        b, c = (int(x) for x in rng.integers(0, 30, size=2))
        n = b + c
        u, s = runs(3, b, c, 2)
        want = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)
        assert mcnemar_exact(u, s) == pytest.approx(want)
        assert discordant_counts(u, s) == (b, c)


def test_inputs_accept_numpy_and_ints_and_refuse_bad_values():
    assert mcnemar_exact(np.array([1, 0, 0, 0, 0, 0]), np.array([0, 1, 1, 1, 1, 1])) == pytest.approx(2 * (1 + 6) / 64)
    with pytest.raises(InputError, match="same items"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(InputError, match="no scored items"):
        mcnemar_exact([], [])
    with pytest.raises(InputError, match="True/False"):
        mcnemar_exact([0, 2], [1, 1])
    with pytest.raises(InputError, match="True/False"):
        mcnemar_exact(["yes", "no"], [True, True])


def test_bootstrap_identical_runs_give_zero_interval():
    u = [True, False, True, True, False] * 10
    assert paired_bootstrap_ci(u, list(u)) == (0.0, 0.0)


def test_bootstrap_all_flip_to_correct_gives_one_one():
    u, s = runs(0, 0, 40, 0)
    assert paired_bootstrap_ci(u, s) == (1.0, 1.0)
    assert paired_bootstrap_ci(s, u) == (-1.0, -1.0)


def test_bootstrap_is_deterministic_with_seed_and_varies_without():
    u, s = runs(20, 8, 15, 17)
    a = paired_bootstrap_ci(u, s, n_resamples=50, seed=3)
    assert a == paired_bootstrap_ci(u, s, n_resamples=50, seed=3)
    # The gain takes values on a 1/60 grid, so two seeds can agree; over several seeds they must not all agree.
    assert len({paired_bootstrap_ci(u, s, n_resamples=50, seed=k) for k in range(6)}) > 1


def test_bootstrap_interval_contains_the_observed_gain_and_narrows_with_confidence():
    u, s = runs(20, 8, 15, 17)  # gain = 7/60
    low, high = paired_bootstrap_ci(u, s, n_resamples=4000)
    assert low < 7 / 60 < high
    assert -0.2 < low < 0.1 and 0.1 < high < 0.35
    low80, high80 = paired_bootstrap_ci(u, s, n_resamples=4000, confidence=0.8)
    assert low < low80 and high80 < high
    # Bootstrap SE of a paired mean difference ~ sd(diff)/sqrt(n): check the width is about right.
    diff = np.array(s, dtype=float) - np.array(u, dtype=float)
    se = diff.std() / math.sqrt(diff.size)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_chunking_gives_the_same_shape_of_result(monkeypatch):
    import grains.stats as stats

    u, s = runs(20, 8, 15, 17)
    monkeypatch.setattr(stats, "_BOOTSTRAP_CHUNK_CELLS", 61)  # one resample per chunk
    low, high = paired_bootstrap_ci(u, s, n_resamples=500)
    assert low < 7 / 60 < high


def test_bootstrap_rejects_bad_arguments():
    u, s = runs(1, 1, 1, 1)
    for kwargs in ({"n_resamples": 0}, {"n_resamples": 2.5}, {"confidence": 1.0}, {"confidence": 0}):
        with pytest.raises(InputError):
            paired_bootstrap_ci(u, s, **kwargs)


def test_describe_gain_wording():
    line = describe_gain(0.50, 0.54, (-0.02, 0.10), 0.41)
    assert line == "+4.0 points, 95% CI -2.0 to +10.0: could be chance (p = 0.41)"
    line = describe_gain(0.40, 0.52, (0.05, 0.19), 0.003)
    assert line == "+12.0 points, 95% CI +5.0 to +19.0: unlikely to be chance (p = 0.003)"
    assert describe_gain(0.6, 0.3, (-0.4, -0.2), 1e-6).startswith("-30.0 points")
    assert describe_gain(0.6, 0.3, (-0.4, -0.2), 1e-6).endswith("unlikely to be chance (p < 0.001)")
    assert "could be chance" in describe_gain(0.5, 0.6, (0.0, 0.2), 0.05)  # 0.05 is not below the level


def test_significance_summary_keys_and_values():
    u, s = runs(both=30, only_unsteered=0, only_steered=5, neither=15)
    out = significance_summary(u, s)
    assert out["accuracy_unsteered"] == pytest.approx(0.6) and out["accuracy"] == pytest.approx(0.7)
    assert out["gain"] == pytest.approx(0.1)
    assert out["p_value"] == pytest.approx(0.0625)
    assert (out["only_unsteered_correct"], out["only_steered_correct"], out["n"]) == (0, 5, 50)
    low, high = out["gain_ci"]
    assert isinstance(out["gain_ci"], list) and 0.0 <= low <= 0.1 <= high
    assert out["reading"].startswith("+10.0 points, 95% CI") and "could be chance (p = 0.06)" in out["reading"]


def test_sign_flip_test_exact_small_cases():
    from grains.stats import sign_flip_test

    assert sign_flip_test([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # only all-plus and all-minus are as extreme
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)
    assert sign_flip_test([0.0, 0.0]) == 1.0
    assert sign_flip_test([1.0, -1.0]) == 1.0


def test_sign_flip_interval_agrees_with_the_test():
    import numpy as np

    from grains.stats import sign_flip_interval, sign_flip_test

    rng = np.random.default_rng(3)
    for shift in (0.0, 0.3, 0.8):
        diffs = rng.normal(shift, 1.0, 30)
        low, high = sign_flip_interval(diffs)
        assert low <= diffs.mean() <= high
        assert (low > 0 or high < 0) == (sign_flip_test(diffs) < 0.05)


def test_holm_adjustment_by_hand():
    from grains.stats import holm_adjust

    # sorted p: 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08 -> kept monotone at 0.09), 0.5 (x1)
    assert holm_adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_adjust([]) == []
    assert holm_adjust([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_too_few_items_say_so_instead_of_an_interval():
    """5 items can never reach p < 0.05 (the smallest p is 2/32); the old interval [+0.6, +1.8] excluded 0 while the
    test said "could be chance"."""
    from grains.stats import margin_gain_summary, min_items_to_test, sign_flip_interval, significance_summary

    assert min_items_to_test() == 6 and min_items_to_test(0.01) == 8
    few = margin_gain_summary([1.2, 0.6, 1.8, 1.0, 1.4])
    assert few["ci"] is None and few["p_value"] == pytest.approx(0.0625)
    assert "too few items to test: at least 6 needed" in few["reading"] and "CI" not in few["reading"]
    assert sign_flip_interval([1.2, 0.6, 1.8, 1.0, 1.4]) == (-np.inf, np.inf)
    enough = margin_gain_summary([1.2, 0.6, 1.8, 1.0, 1.4, 0.9])
    assert enough["p_value"] < 0.05 and enough["ci"][0] > 0
    mc = significance_summary([0, 0, 0, 1], [1, 1, 1, 1], "mcnemar")
    assert mc["gain_ci"] is None and "too few items to test: at least 6 needed" in mc["reading"]
