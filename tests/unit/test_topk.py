"""Top-k selection with eligibility masks and user overrides."""

import pytest

from grains.errors import InputError
from grains.topk import select_top_k

SCORES = [0.0, 0.5, -0.2, 0.9, -0.7, 0.1, -0.05]


def test_picks_largest_and_most_negative():
    sel = select_top_k(SCORES, 2)
    assert sel.positive == [1, 3]
    assert sel.negative == [2, 4]


def test_ineligible_tokens_are_never_picked():
    eligible = [False, True, True, False, True, True, True]
    sel = select_top_k(SCORES, 2, eligible)
    assert 3 not in sel.positive and sel.positive == [1, 5]
    assert sel.excluded == [0, 3]


def test_overrides():
    sel = select_top_k(SCORES, 1, force_positive=[5], force_negative=[3], drop=[4])
    # 3 was forced negative, so the automatic I+ pick is the next best (1); forced tokens come on top of k
    assert sel.positive == [1, 5]
    assert sel.negative == [2, 3]


@pytest.mark.parametrize("k, message", [(0, "at least 1"), (-3, "at least 1"), (1.5, "whole number"),
                                        (8, "larger than")])
def test_bad_k(k, message):
    with pytest.raises(InputError, match=message):
        select_top_k(SCORES, k)


def test_k_clipped_when_not_strict_and_sides_stay_disjoint():
    sel = select_top_k(SCORES, 50, strict=False)
    assert not set(sel.positive) & set(sel.negative)
    assert set(sel.positive) | set(sel.negative) == set(range(len(SCORES)))
    assert len(sel.positive) == 4 and len(sel.negative) == 3
    assert min(SCORES[i] for i in sel.positive) >= max(SCORES[i] for i in sel.negative)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("n_eligible", [1, 2, 3, 5, 7])
def test_sides_never_share_a_token(k, n_eligible):
    eligible = [i < n_eligible for i in range(len(SCORES))]
    sel = select_top_k(SCORES, k, eligible, strict=False)
    assert not set(sel.positive) & set(sel.negative)
    assert set(sel.positive) | set(sel.negative) <= set(range(n_eligible))


def test_a_token_forced_to_both_sides_is_refused():
    with pytest.raises(InputError, match="both I\\+ and I-"):
        select_top_k(SCORES, 1, force_positive=[2], force_negative=[2])


def test_override_out_of_range():
    with pytest.raises(InputError, match="out of range"):
        select_top_k(SCORES, 1, force_positive=[99])
