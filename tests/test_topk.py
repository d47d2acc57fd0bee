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
    assert sel.positive == [5]  # 3 was forced negative, so it leaves the positive side
    assert sel.negative == [2, 3]


@pytest.mark.parametrize("k, message", [(0, "at least 1"), (-3, "at least 1"), (1.5, "whole number"),
                                        (8, "larger than")])
def test_bad_k(k, message):
    with pytest.raises(InputError, match=message):
        select_top_k(SCORES, k)


def test_k_clipped_when_not_strict():
    sel = select_top_k(SCORES, 50, strict=False)
    assert len(sel.positive) == len(sel.negative) == len(SCORES)


def test_override_out_of_range():
    with pytest.raises(InputError, match="out of range"):
        select_top_k(SCORES, 1, force_positive=[99])
