"""Tests for grains.sentiment: VADER compound scores, the sign test and the paired sentiment gain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grains.errors import InputError
from grains.sentiment import sentiment_gain, sign_test, vader_compound

ROOT = Path(__file__).resolve().parents[2]


def test_vader_compound_signs_and_values() -> None:
    pos, neg, neutral, empty = vader_compound(
        ["The food was wonderful and the staff were lovely.", "The food was awful and the staff were rude.",
         "The train leaves at nine.", ""])
    assert pos > 0.5 and neg < -0.5
    assert neutral == 0.0 and empty == 0.0
    # VADER's own documented example sentence and score (vaderSentiment README)
    assert vader_compound(["VADER is smart, handsome, and funny."])[0] == pytest.approx(0.8316, abs=1e-4)


def test_vader_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        vader_compound("a single string")
    with pytest.raises(InputError):
        vader_compound([None])


@pytest.mark.parametrize(
    ("diffs", "expected"),
    [
        ([1.0] * 5, 2 / 32),  # 5 of 5 up: 2 * 0.5**5
        ([0.3] * 7 + [-0.1], 2 * 9 / 256),  # 7 up, 1 down: 2 * (1 + 8) / 2**8
        ([0.2, -0.2], 1.0),
        ([0.0, 0.0, 0.0], 1.0),  # all ties
        ([0.5, 0.0, 0.4, 0.0, 0.1], 2 / 8),  # ties dropped: 3 of 3 up
    ],
)
def test_sign_test(diffs: list[float], expected: float) -> None:
    assert sign_test(diffs) == pytest.approx(expected)


def test_sentiment_gain_known_case() -> None:
    unsteered = ["The train leaves at nine."] * 10
    steered = ["The train leaves at nine, and it is wonderful."] * 9 + ["The train leaves at nine."]
    g = sentiment_gain(unsteered, steered)
    up = vader_compound(["The train leaves at nine, and it is wonderful."])[0]
    assert g.n == 10 and g.positive == 9 and g.negative == 0 and g.ties == 1
    assert g.mean_unsteered == 0.0
    assert g.mean_gain == pytest.approx(0.9 * up)
    assert g.p_value == pytest.approx(2 / 2**9)
    assert g.ci_low < g.mean_gain < g.ci_high <= up + 1e-9
    assert g.to_dict()["positive"] == 9


def test_sentiment_gain_identical_texts_is_zero() -> None:
    texts = ["It was great.", "It was terrible.", "It was."]
    g = sentiment_gain(texts, texts)
    assert g.mean_gain == 0.0 and g.ties == 3 and g.p_value == 1.0 and g.ci_low == g.ci_high == 0.0


def test_sentiment_gain_refuses_unpaired() -> None:
    with pytest.raises(InputError):
        sentiment_gain(["a"], ["a", "b"])
    with pytest.raises(InputError):
        sentiment_gain([], [])


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "assets" / "data" / name).read_text().splitlines()]


def test_shipped_sentiment_pairs_point_the_right_way() -> None:
    """VADER, an outside judge, ranks the positive continuation above the negative one in almost every pair."""
    rows = _rows("sentiment_pairs.jsonl")
    assert len(rows) >= 240
    chosen = vader_compound([r["prompt"] + r["chosen"] for r in rows])
    rejected = vader_compound([r["prompt"] + r["rejected"] for r in rows])
    agree = sum(c > r for c, r in zip(chosen, rejected))
    assert agree / len(rows) >= 0.97


def test_shipped_neutral_prompts_have_no_sentiment() -> None:
    for name in ("neutral_prompts.jsonl", "neutral_prompts_heldout.jsonl", "neutral_prompts_unseen.jsonl"):
        rows = _rows(name)
        assert all(score == 0.0 for score in vader_compound([r["prompt"] for r in rows])), name


def test_the_unseen_neutral_prompts_share_none_with_the_sets_that_made_choices() -> None:
    unseen = {r["prompt"] for r in _rows("neutral_prompts_unseen.jsonl")}
    seen = {r["prompt"] for name in ("neutral_prompts.jsonl", "neutral_prompts_heldout.jsonl") for r in _rows(name)}
    assert len(unseen) == 40 and not unseen & seen


def test_the_shipped_default_vector_is_within_its_budget_by_the_figure_it_reports() -> None:
    """The old default read kl_mean 0.60, budget 0.5, within_budget false (screened on 24 prompts, reported on 60);
    its held-out sentiment figure came from prompts that had chosen CAA over GrAInS."""
    from grains.side_effects import KL_PROMPT_COUNT

    meta = json.loads((ROOT / "assets" / "default_vector.json").read_text())["meta"]
    side = meta["side_effects"]
    assert side["within_budget"] is True and side["kl_mean"] <= meta["kl_budget"]
    assert side["n_prompts"] == KL_PROMPT_COUNT
    assert meta["heldout_evaluation"]["continuations"]["prompts"] == "assets/data/neutral_prompts_unseen.jsonl"
    assert "no choice" in meta["data_used"]["heldout_continuations"]
    assert meta["selection"]["estimate"] == "held-out claim split"
