"""Tests for grains.fluency: distinct-n and the stuck-in-a-repeat share on hand-made texts with known answers."""

from __future__ import annotations

import pytest

from grains.errors import InputError
from grains.fluency import (
    distinct_n,
    fluency_report,
    is_stuck,
    ngrams,
    repeated_ngram_share,
    repeated_ngrams,
    split_units,
)

# The degenerate continuation the shipped TruthfulQA vector produced on the embedded model (issue 12, item 10).
KEY_LOOP = "The key to the secret! The key to the secret! The key to the key!"


class CharTokenizer:
    """Stands in for a Hugging Face tokenizer: anything with tokenize(text)."""

    def tokenize(self, text: str) -> list[str]:
        return list(text)


def test_units_are_lower_cased_words_and_single_marks() -> None:
    assert split_units("Don't stop. The KEY!!") == ["don't", "stop", ".", "the", "key", "!", "!"]
    assert split_units("The. .......") == ["the"] + ["."] * 8
    assert split_units("  ") == []
    assert split_units("a\n\n b\tc\r\n") == ["a", "\n", "\n", "b", "c", "\n"]
    assert split_units("A b", tokenizer=str.split) == ["A", "b"]
    assert split_units("ab", tokenizer=CharTokenizer()) == ["a", "b"]


def test_ngrams_overlap_and_short_texts() -> None:
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []
    assert len(ngrams(["x"] * 5, 4)) == 2


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["a b a b"], 2, 2 / 3),  # ab, ba, ab
        (["a b c", "a b d"], 2, 3 / 4),  # ab bc ab bd: pooled over texts
        (["The Cat", "the cat"], 2, 1 / 2),  # lower-cased
        (["a b c d"], 2, 1.0),
        (["a", "b"], 2, 0.0),  # n-grams never span two texts; none at all -> 0
        (["hello"], 2, 0.0),
        (["", "a b"], 2, 1.0),
        (["x x x x"], 1, 1 / 4),
        (["ok. ok."], 1, 2 / 4),  # ok . ok .
    ],
)
def test_distinct_n_corpus(texts: list[str], n: int, expected: float) -> None:
    assert distinct_n(texts, n) == pytest.approx(expected)


def test_distinct_n_text_average_differs_from_corpus() -> None:
    texts = ["a b c", "a b c", "x x x x x"]
    # corpus: distinct {ab, bc, xx} = 3 over 2 + 2 + 4 = 8 bigrams
    assert distinct_n(texts, 2) == pytest.approx(3 / 8)
    # per text: 1, 1, 1/4 -> mean 0.75
    assert distinct_n(texts, 2, average="text") == pytest.approx(0.75)
    # texts without n-grams are left out of the per-text mean
    assert distinct_n(["a b", "a"], 2, average="text") == pytest.approx(1.0)


def test_distinct_n_units_choice_changes_the_answer() -> None:
    assert distinct_n(["The Cat", "the cat"], 2, tokenizer=str.split) == 1.0
    assert distinct_n(["abab"], 2, tokenizer=CharTokenizer()) == pytest.approx(2 / 3)
    # the dots of a degenerate output repeat once punctuation is split off; as whitespace words they would not
    assert distinct_n(["The. ......."], 2) == pytest.approx(2 / 8)
    assert distinct_n(["The. ......."], 2, tokenizer=str.split) == 1.0
    assert distinct_n(["\n" * 30], 2) == pytest.approx(1 / 29)


def test_repeated_ngrams_counts_every_position() -> None:
    reps = repeated_ngrams(KEY_LOOP, 4)
    assert reps[("the", "key", "to", "the")] == 3
    assert reps[("key", "to", "the", "secret")] == 2
    assert ("to", "the", "key", "!") not in reps  # occurs once, at the end
    assert repeated_ngrams("ha ha ha ha ha", 4) == {("ha", "ha", "ha", "ha"): 2}
    assert repeated_ngrams("ha ha ha ha", 4) == {}
    assert repeated_ngrams("ha ha ha ha ha ha", 4, min_count=3) == {("ha",) * 4: 3}


@pytest.mark.parametrize(
    ("text", "stuck"),
    [
        (KEY_LOOP, True),
        ("The. .......", True),  # ". . . ." at five positions
        ("\n  \n  \n  \n  \n", True),  # a run of empty lines is a loop, not an empty text
        ("It rained.\n\nThen it stopped.", False),
        ("The cat sat on the mat and looked at the dog.", False),  # "the" repeats, no 4-gram does
        ("It is one of the best and one of the worst.", False),  # "one of the" is only a 3-gram repeat
        ("It is one of the best and one of the best.", True),
        ("A b c d a B C D", True),  # lower-cased before comparing
        ("", False),
    ],
)
def test_is_stuck(text: str, stuck: bool) -> None:
    assert is_stuck(text) is stuck


def test_repeated_ngram_share() -> None:
    texts = ["ha ha ha ha ha", "a b c d", "x y z w x y z w", "fine text here"]
    assert repeated_ngram_share(texts) == pytest.approx(2 / 4)
    assert repeated_ngram_share(texts, min_count=3) == 0.0
    assert repeated_ngram_share(texts, n=2) == pytest.approx(2 / 4)
    assert repeated_ngram_share(["A b c d a B C D"], tokenizer=str.split) == 0.0
    assert repeated_ngram_share(["abcabc"], n=3, tokenizer=CharTokenizer()) == 1.0


def test_fluency_report() -> None:
    same = ["a b c d", KEY_LOOP]
    r = fluency_report(same, same)
    assert r.distinct_ratio == 1.0 and r.stuck_steered == r.stuck_unsteered == 0.5
    r = fluency_report(["a b c d"], ["a b a b"])
    assert r.distinct_unsteered == 1.0
    assert r.distinct_steered == pytest.approx(2 / 3)
    assert r.distinct_ratio == pytest.approx(2 / 3)
    assert r.to_dict()["n_texts"] == 1
    assert fluency_report(["a"], ["a b"]).distinct_ratio is None  # unsteered has no bigrams


@pytest.mark.parametrize(
    "call",
    [
        lambda: distinct_n("a b c", 2),  # a single string, not a list
        lambda: distinct_n([], 2),
        lambda: distinct_n(["a b"], 0),
        lambda: distinct_n(["a b"], True),
        lambda: distinct_n(["a b"], 2, average="mean"),
        lambda: distinct_n([3], 2),
        lambda: repeated_ngrams("a b", 4, min_count=1),
        lambda: fluency_report(["a"], ["a", "b"]),
        lambda: split_units("a", tokenizer=42),
    ],
)
def test_bad_input_is_refused(call) -> None:
    with pytest.raises(InputError):
        call()
