"""Fluency of generated text, to report what steering costs: distinct-n and the share of texts stuck in a repeat.

Both measures work on the *continuations* only (pass the generated text without the prompt). By default a text is
split into **lower-cased words, single punctuation marks and line breaks** (`"Don't stop. The KEY!!\n"` ->
`["don't", "stop", ".", "the", "key", "!", "!", "\n"]`): a word is a run of letters and digits (an apostrophe
inside a word keeps it whole), every other non-space character is a unit of its own, and so is every newline;
spaces and tabs only separate. Words rather than model tokens keep the numbers comparable across models and
tokenizers; splitting punctuation and line breaks off (rather than plain whitespace words) makes a run of dots or
of empty lines count as the repetition it is (`"The. ......."` is 9 units, not 2; a continuation of 30 newlines
is 30 units, not an empty text that no measure would see).
Pass `tokenizer` to count in other units instead: any object with a `tokenize(text) -> list[str]` method (a Hugging
Face tokenizer counts model tokens, case kept), or a plain function `text -> list[str]` (`str.split` gives
whitespace words, case kept).

Definitions (n-grams are runs of n consecutive units inside one text; they never span two texts):

- distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"):
  with `average="corpus"` (the default, as in the paper), the number of different n-grams over all texts divided by
  the number of n-gram positions over all texts; with `average="text"`, that ratio per text, averaged over the texts
  that have at least one n-gram. A text shorter than n units has no n-grams. When there are no n-grams at all the
  result is 0.0: nothing was written that could be diverse, which is how a degenerate output should score.
- stuck in a repeat: a text is stuck when some n-gram occurs at least `min_count` times in it, counting every
  position, overlapping ones included (`"ha ha ha ha ha"` holds the 4-gram `ha ha ha ha` twice, at positions 0
  and 1). `repeated_ngram_share` is the fraction of texts that are stuck; with the defaults n=4, min_count=2.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from grains.errors import InputError

Tokenizer = Callable[[str], Sequence[str]] | Any
_UNIT = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*|\n|\S")  # a word (letters/digits, inner apostrophes), \n, a mark


def split_units(text: str, tokenizer: Tokenizer | None = None) -> list[str]:
    """The units n-grams are made of: lower-cased words, marks and newlines by default, or the tokenizer's pieces.

    Args:
        text: one generated text (without the prompt).
        tokenizer: None for lower-cased words, single punctuation marks and newlines; an object with `tokenize(text)`
            (e.g. a Hugging Face tokenizer: model tokens, case kept) or a function returning a list of strings.

    Returns:
        The list of units, in order.
    """
    if not isinstance(text, str):
        raise InputError(f"Texts must be strings, got {type(text).__name__}.")
    if tokenizer is None:
        return _UNIT.findall(text.lower())
    if hasattr(tokenizer, "tokenize"):
        return list(tokenizer.tokenize(text))
    if callable(tokenizer):
        return list(tokenizer(text))
    raise InputError("tokenizer must be None, an object with a tokenize() method, or a function text -> tokens.")


def ngrams(units: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Every run of n consecutive units, one per start position (overlapping runs included).

    Args:
        units: words or tokens of one text.
        n: n-gram length, at least 1.

    Returns:
        len(units) - n + 1 tuples (none when the text is shorter than n).
    """
    _check_n(n)
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a whole number of at least 1, got {n!r}.")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("Pass a list of texts, not a single string.")
    texts = list(texts)
    if not texts:
        raise InputError("There are no texts to measure.")
    return texts


def distinct_n(texts: Sequence[str], n: int = 2, tokenizer: Tokenizer | None = None,
               average: Literal["corpus", "text"] = "corpus") -> float:
    """distinct-n: different n-grams divided by all n-gram positions (see the module docstring).

    Args:
        texts: generated continuations, without their prompts.
        n: n-gram length (2 for distinct-2).
        tokenizer: None for lower-cased words, marks and newlines (the default, model-independent); see `split_units`.
        average: "corpus" pools the n-grams of all texts (Li et al. 2016); "text" averages the per-text ratio over
            the texts that have at least one n-gram.

    Returns:
        A fraction in [0, 1]; 1.0 means no n-gram repeats; 0.0 when there are no n-grams at all.
    """
    _check_n(n)
    texts = _check_texts(texts)
    per_text = [ngrams(split_units(t, tokenizer), n) for t in texts]
    if average == "corpus":
        total = sum(len(g) for g in per_text)
        return len({g for grams in per_text for g in grams}) / total if total else 0.0
    if average == "text":
        ratios = [len(set(g)) / len(g) for g in per_text if g]
        return sum(ratios) / len(ratios) if ratios else 0.0
    raise InputError(f"average must be 'corpus' or 'text', got {average!r}.")


def repeated_ngrams(text: str, n: int = 4, min_count: int = 2,
                    tokenizer: Tokenizer | None = None) -> dict[tuple[str, ...], int]:
    """The n-grams of one text that occur at least `min_count` times (overlapping occurrences counted).

    Args:
        text: one generated continuation.
        n: n-gram length.
        min_count: how many occurrences make a repeat (at least 2).
        tokenizer: None for lower-cased words, marks and newlines; see `split_units`.

    Returns:
        {n-gram: count} for every repeated n-gram; empty when the text is not stuck.
    """
    _check_n(n)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 2:
        raise InputError(f"min_count must be a whole number of at least 2, got {min_count!r}.")
    counts = Counter(ngrams(split_units(text, tokenizer), n))
    return {g: c for g, c in counts.items() if c >= min_count}


def is_stuck(text: str, n: int = 4, min_count: int = 2, tokenizer: Tokenizer | None = None) -> bool:
    """True when some n-gram occurs at least `min_count` times in `text` (see `repeated_ngrams`).

    Args:
        text: one generated continuation.
        n: n-gram length.
        min_count: occurrences that make a repeat.
        tokenizer: None for lower-cased words, marks and newlines; see `split_units`.

    Returns:
        Whether the text is stuck in a repeat.
    """
    return bool(repeated_ngrams(text, n, min_count, tokenizer))


def repeated_ngram_share(texts: Sequence[str], n: int = 4, min_count: int = 2,
                         tokenizer: Tokenizer | None = None) -> float:
    """The share of texts stuck in a repeat: some n-gram occurs at least `min_count` times in the text.

    Args:
        texts: generated continuations, without their prompts.
        n: n-gram length (4: a 4-unit phrase said twice).
        min_count: occurrences that make a repeat (2 by default).
        tokenizer: None for lower-cased words, marks and newlines; see `split_units`.

    Returns:
        A fraction in [0, 1] (0.1 = 10% of the texts are stuck).
    """
    texts = _check_texts(texts)
    return sum(is_stuck(t, n, min_count, tokenizer) for t in texts) / len(texts)


@dataclass(frozen=True)
class FluencyReport:
    """Fluency of steered continuations beside the unsteered ones for the same prompts.

    distinct_ratio is steered / unsteered distinct-n (None when the unsteered texts have no n-grams).
    """

    n_texts: int
    distinct_n: int
    distinct_unsteered: float
    distinct_steered: float
    distinct_ratio: float | None
    repeat_n: int
    stuck_unsteered: float
    stuck_steered: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def fluency_report(unsteered: Sequence[str], steered: Sequence[str], distinct: int = 2, repeat: int = 4,
                   tokenizer: Tokenizer | None = None) -> FluencyReport:
    """distinct-n and stuck share of steered vs unsteered continuations of the same prompts.

    Args:
        unsteered: continuations without steering, one per prompt.
        steered: continuations with steering, same prompts in the same order.
        distinct: n for distinct-n (2 by default).
        repeat: n for the stuck-in-a-repeat test (4 by default, min_count 2).
        tokenizer: None for lower-cased words, marks and newlines; see `split_units`.

    Returns:
        A FluencyReport; at strength 0 (identical texts) the ratio is exactly 1 and the stuck shares are equal.
    """
    unsteered, steered = _check_texts(unsteered), _check_texts(steered)
    if len(unsteered) != len(steered):
        raise InputError(f"Got {len(unsteered)} unsteered and {len(steered)} steered texts; they must pair up.")
    d_u = distinct_n(unsteered, distinct, tokenizer)
    d_s = distinct_n(steered, distinct, tokenizer)
    return FluencyReport(
        n_texts=len(steered), distinct_n=distinct, distinct_unsteered=d_u, distinct_steered=d_s,
        distinct_ratio=(d_s / d_u) if d_u > 0 else None, repeat_n=repeat,
        stuck_unsteered=repeated_ngram_share(unsteered, repeat, tokenizer=tokenizer),
        stuck_steered=repeated_ngram_share(steered, repeat, tokenizer=tokenizer),
    )


DEGENERATE_MIN_UNITS = 8  # shorter texts are never flagged
DEGENERATE_DISTINCT2 = 0.5  # distinct-2 of one text below this: more than half its bigrams are repeats
DEGENERATE_REPEATS = 3  # or one 4-gram said this many times
DEGENERATE_MIN_CHARS = 24  # or, in a text of at least this many non-space characters,
DEGENERATE_CHAR_PAIRS = 0.2  # fewer than this share of its character pairs are different


def degeneracy(text: str, tokenizer: Tokenizer | None = None) -> str | None:
    """Why one continuation looks degenerate ("The. ........", a word said 40 times), or None when it does not.

    A text of at least 8 units is flagged when its own distinct-2 is below 0.5 (more than half of its bigrams are
    repeats) or when one 4-gram occurs 3 or more times in it (stuck in a repeat); a text of at least 24 non-space
    characters also when fewer than 20% of its character pairs differ (one long run such as "PPPPPPPP"). Ordinary
    sentences score near 1 on all three.

    Args:
        text: one generated continuation (without the prompt).
        tokenizer: None for lower-cased words, marks and newlines; see `split_units`.

    Returns:
        A short plain reason ("distinct-2 0.12: the same word pairs over and over"), or None.
    """
    chars = "".join(text.split())
    if len(chars) >= DEGENERATE_MIN_CHARS:  # one long "word" of repeats ("PPPPPPPP", "!?!?!?!?") has few units
        pairs = [chars[i:i + 2] for i in range(len(chars) - 1)]
        ratio = len(set(pairs)) / len(pairs)
        if ratio < DEGENERATE_CHAR_PAIRS:
            return f"{ratio:.2f} distinct character pairs: the same characters over and over"
    units = split_units(text, tokenizer)
    if len(units) < DEGENERATE_MIN_UNITS:
        return None
    d2 = distinct_n([text], 2, tokenizer)
    if d2 < DEGENERATE_DISTINCT2:
        return f"distinct-2 {d2:.2f}: the same word pairs over and over"
    repeats = repeated_ngrams(text, 4, DEGENERATE_REPEATS, tokenizer)
    if repeats:
        gram, count = max(repeats.items(), key=lambda kv: kv[1])
        shown = " ".join(gram).replace("\n", "\\n")
        return f"stuck in a repeat: \"{shown}\" {count} times"
    return None
