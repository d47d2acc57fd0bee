"""Response log-probabilities: the shared-prefix (KV cache) path equals a full forward of each prompt + response."""

from types import SimpleNamespace

import pytest

from grains.errors import InputError
from grains.models import load_model
from grains.scoring import _full_logprobs, _shared_prefix_logprobs, response_logprobs, score_pair, score_pairs
from grains.steering import Steering, steer
from tests.factories import random_vector

RESPONSES = [" Paris", " Lyon is the capital of France", " no", " It is Marseille, of course."]


@pytest.fixture(scope="module", params=["tiny-random-llama", "tiny-random-gemma3-text", "tiny-random-qwen2"])
def lm(request):
    return load_model(request.param)


def _ids(lm, responses):
    from grains.prompts import encode_response

    return [encode_response(lm.tokenizer, r, lm.prompt_style).ids for r in responses]


def test_shared_prefix_equals_full_forward(lm):
    enc = lm.encode_prompt("What is the capital of France? Answer briefly.")
    ids = _ids(lm, RESPONSES)
    shared, counts = _shared_prefix_logprobs(lm, enc, ids)
    full, full_counts = _full_logprobs(lm, enc, ids)
    assert counts == full_counts == [len(i) for i in ids]
    assert shared == pytest.approx(full, abs=1e-4, rel=1e-4)
    # The responses differ, so their scores must too (a path that ignored the response would pass the line above
    # only by accident).
    assert len(set(round(v, 3) for v in shared)) == len(shared)


def test_shared_prefix_equals_full_forward_under_steering(lm):
    enc = lm.encode_prompt("Is the sky green?")
    ids = _ids(lm, RESPONSES)
    plain, _ = _shared_prefix_logprobs(lm, enc, ids)
    with steer(lm, random_vector(lm, norm=1.0, method="mean", k=3, n_examples=1), layers=1, strength=2.0):
        shared, _ = _shared_prefix_logprobs(lm, enc, ids)
        full, _ = _full_logprobs(lm, enc, ids)
    assert shared == pytest.approx(full, abs=1e-4, rel=1e-4)
    assert max(abs(a - b) for a, b in zip(shared, plain)) > 1e-3  # steering reached the scored tokens


def test_more_responses_than_one_chunk(lm):
    from grains import scoring

    enc = lm.encode_prompt("Name a colour.")
    many = [f" colour number {i}" for i in range(scoring.ROWS_PER_FORWARD + 3)]
    ids = _ids(lm, many)
    shared, _ = _shared_prefix_logprobs(lm, enc, ids)
    full, _ = _full_logprobs(lm, enc, ids)
    assert shared == pytest.approx(full, abs=1e-4, rel=1e-4)
    # The prefix cache is copied per chunk, so scoring twice gives the same numbers.
    again, _ = response_logprobs(lm, enc, many)
    assert again == pytest.approx(shared, abs=1e-6)


def test_score_pair_margin_is_the_difference(lm):
    s = score_pair(lm, "2 + 2 =", " 4", " 5")
    assert s.margin() == pytest.approx(s.logp_chosen - s.logp_rejected)
    assert s.logp_chosen < 0 and s.logp_rejected < 0


PAIRS = [SimpleNamespace(prompt=p, chosen=c, rejected=r) for p, c, r in [
    ("Q: What colour is the sky on a clear day?\nA:", " Blue.", " Green, mostly, in the evening light."),
    ("Hi", " there", " you fool"),
    ("Q: Where and when was the Declaration of Independence signed?\nA:", " Philadelphia, 1776",
     " New York City in 1790, by nobody at all"),
    ("Tell me a story.", " Once upon a time", " No."),
]]


@pytest.mark.parametrize("steered", [False, True])
def test_batched_pairs_equal_one_pair_at_a_time(lm, steered, monkeypatch):
    from grains import prefix_cache

    steering = Steering.create(lm, random_vector(lm, norm=1.0), 2, 1.5) if steered else None
    one_by_one = [score_pair(lm, p.prompt, p.chosen, p.rejected, steering=steering) for p in PAIRS]
    together = score_pairs(lm, PAIRS, steering)
    assert [s.margin() for s in together] == pytest.approx([s.margin() for s in one_by_one], abs=1e-4, rel=1e-4)
    assert [(s.tokens_chosen, s.tokens_rejected) for s in together] == [
        (s.tokens_chosen, s.tokens_rejected) for s in one_by_one]
    assert len({round(s.logp_chosen, 3) for s in together}) == len(PAIRS)  # the rows are not mixed up
    monkeypatch.setattr(prefix_cache, "LOGIT_FLOATS_PER_FORWARD", 1)  # one row per forward pass: same numbers
    assert [s.margin() for s in score_pairs(lm, PAIRS, steering)] == pytest.approx(
        [s.margin() for s in together], abs=1e-4, rel=1e-4)


def test_batched_pairs_sort_by_length_and_cap_the_tokens_of_a_pass(lm, monkeypatch):
    """Rows are grouped by length (less padding) and each pass stays under TOKENS_PER_FORWARD; the scores come back
    in the pairs' order, equal to one pair at a time."""
    from grains import prefix_cache

    passes: list[tuple[int, int]] = []
    longest_prompts: list[int] = []
    real = prefix_cache.chunks

    def counting(order, rows, vocab):
        for chunk in real(order, rows, vocab):
            picked = [rows[i] for i in chunk]
            passes.append((len(picked), max(len(p) for p, _ in picked) + max(len(r) for _, r in picked) + 1))
            longest_prompts.append(max(len(p) for p, _ in picked))
            yield chunk

    monkeypatch.setattr(prefix_cache, "chunks", counting)
    monkeypatch.setattr(prefix_cache, "TOKENS_PER_FORWARD", 60)
    capped = score_pairs(lm, PAIRS)
    one_by_one = [score_pair(lm, p.prompt, p.chosen, p.rejected) for p in PAIRS]
    assert [s.margin() for s in capped] == pytest.approx([s.margin() for s in one_by_one], abs=1e-4, rel=1e-4)
    assert len(passes) > 1 and sum(rows for rows, _ in passes) == 2 * len(PAIRS)
    assert all(rows * length <= 60 or rows == 1 for rows, length in passes), passes
    assert longest_prompts == sorted(longest_prompts)  # shortest first: each pass pads only to rows like its own


def test_batched_pairs_refuse_identical_answers(lm):
    with pytest.raises(InputError, match="identical"):
        score_pairs(lm, [SimpleNamespace(prompt="Hi", chosen=" yes", rejected="yes ")])
