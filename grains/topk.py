"""Top-k token selection: the k most positive and k most negative tokens of a sequence, with user overrides."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from grains.errors import InputError

MAX_K = 512


@dataclass
class TokenSelection:
    """Positions in one sequence: `positive` (largest scores, I+) and `negative` (most negative, I-)."""

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
    """I+ = the k eligible tokens with the largest scores, I- = the k most negative.

    Forced positions are added to their side (and removed from the other); dropped positions are never picked.
    With `strict`, asking for more tokens than are eligible is an error; otherwise k is clipped.
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
    candidates = [i for i in range(n) if eligible[i] and i not in dropped]
    if strict and k > len(candidates):
        raise InputError(f"k = {k} is larger than the {len(candidates)} tokens that can be selected; lower k.")
    by_score = sorted(candidates, key=lambda i: scores[i])
    kk = min(k, len(candidates))
    positive = by_score[len(by_score) - kk:]
    negative = by_score[:kk]
    positive = sorted((set(positive) - forced_neg) | forced_pos)
    negative = sorted((set(negative) - forced_pos) | forced_neg)
    excluded = [i for i in range(n) if not eligible[i]]
    return TokenSelection(positive=positive, negative=negative, excluded=excluded)
