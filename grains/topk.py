"""Top-k token selection: the k most positive and k most negative tokens of a sequence, with user overrides."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from grains.errors import InputError

MAX_K = 512


@dataclass
class TokenSelection:
    """Positions in one sequence: `positive` (largest scores, I+) and `negative` (most negative, I-).

    Args:
        positive: positions of I+.
        negative: positions of I- (never shared with I+).
        excluded: positions dropped by the user.

    Example:
        >>> select_top_k([0.5, -1.0, 2.0, 0.1], k=1)
        TokenSelection(positive=[2], negative=[1], excluded=[])
    """

    positive: list[int]
    negative: list[int]
    excluded: list[int] = field(default_factory=list)


def check_k(k: int) -> int:
    """k must be a whole number from 1 to MAX_K."""
    if isinstance(k, bool) or not isinstance(k, int):
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        else:
            raise InputError("k must be a whole number.")
    if k < 1:
        raise InputError("k must be at least 1: top-k picks the k most positive and k most negative tokens.")
    if k > MAX_K:
        raise InputError(f"k must be at most {MAX_K}.")
    return k


def select_top_k(
    scores: Sequence[float],
    k: int,
    eligible: Sequence[bool] | None = None,
    force_positive: Iterable[int] = (),
    force_negative: Iterable[int] = (),
    drop: Iterable[int] = (),
    strict: bool = True,
) -> TokenSelection:
    """I+ = the k eligible tokens with the largest scores, I- = the k most negative; the two never share a token.

    Args:
        scores: one score per token.
        k: tokens per side.
        eligible: which tokens may be picked (default: all).
        force_positive: positions added to I+ on top of its k automatic picks (and kept out of I-).
        force_negative: positions added to I- on top of its k automatic picks (and kept out of I+).
        drop: positions never picked.
        strict: asking for more than half the selectable tokens per side is an error; otherwise each side is
            clipped so the sides stay disjoint (I+ gets the extra token when the count is odd).

    Returns:
        The TokenSelection (positive, negative, excluded).

    Example:
        >>> select_top_k([0.5, -1.0, 2.0, 0.1], k=1)
        TokenSelection(positive=[2], negative=[1], excluded=[])
    """
    k = check_k(k)
    n = len(scores)
    eligible = list(eligible) if eligible is not None else [True] * n
    if len(eligible) != n:
        raise ValueError("eligible mask and scores differ in length")
    forced_pos, forced_neg, dropped = set(force_positive), set(force_negative), set(drop)
    for i in forced_pos | forced_neg | dropped:
        if not 0 <= i < n:
            raise InputError(f"Token index {i} is out of range: the sequence has {n} tokens (0 to {n - 1}).")
    both = forced_pos & forced_neg
    if both:
        raise InputError(f"Token {min(both)} is forced into both I+ and I-; a token can be on one side only.")
    candidates = [i for i in range(n) if eligible[i] and i not in dropped and i not in forced_pos | forced_neg]
    if strict and 2 * k > len(candidates):
        raise InputError(f"k = {k} per side is larger than half of the {len(candidates)} tokens that can be selected "
                         f"(I+ and I- never share a token); lower k.")
    by_score = sorted(candidates, key=lambda i: scores[i])
    want_pos = want_neg = k
    if want_pos + want_neg > len(by_score):  # share what is left so the sides stay disjoint
        want_pos = min(want_pos, (len(by_score) + 1) // 2)
        want_neg = min(want_neg, len(by_score) - want_pos)
    positive = sorted(set(by_score[len(by_score) - want_pos:] if want_pos else []) | forced_pos)
    negative = sorted(set(by_score[:want_neg]) | forced_neg)
    excluded = [i for i in range(n) if not eligible[i]]
    return TokenSelection(positive=positive, negative=negative, excluded=excluded)
