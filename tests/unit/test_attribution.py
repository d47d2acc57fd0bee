"""Contrastive IG on tiny random models: completeness, chunking, agreement with a step-by-step reference."""

import math

import pytest
import torch

from benchmarks.reference import reference_attribute
from grains.attribution import attribute
from grains.encoding import encode_example
from grains.errors import InputError
from grains.models import load_model

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", "Paris is the capital.", "London, I think."


@pytest.fixture(scope="module", params=["tiny-random-llama", "tiny-random-qwen2", "tiny-random-gemma3-text"])
def lm(request):
    return load_model(request.param)


def test_scores_align_with_prompt_tokens(lm):
    result = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=8)
    assert len(result.scores) == len(result.tokens) == result.prompt_len
    assert len(result.plus_scores) == len(result.plus_tokens) > result.prompt_len
    assert all(math.isfinite(s) for s in result.scores + result.plus_scores + result.minus_scores)
    # the prompt heatmap is a prompt token's score in s+ plus its score in s-
    for i in range(result.prompt_len):
        assert result.scores[i] == pytest.approx(result.plus_scores[i] + result.minus_scores[i], abs=1e-6)
    # special tokens keep their real embedding in the baseline, so they get exactly zero
    for score, special in zip(result.scores, result.special_mask):
        if special:
            assert score == 0.0


@pytest.mark.parametrize("target", ["sequence", "last"])
def test_completeness_with_enough_steps(target):
    # Llama and Qwen2 tiny models have smooth IG paths (the tiny Gemma-3's RMSNorm path is spiky by design).
    for name in ("tiny-random-llama", "tiny-random-qwen2"):
        lm = load_model(name)
        result = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=128, target=target, points="gauss-legendre",
                           tolerance=None)
        gap = result.f_input - result.f_baseline
        total = sum(result.plus_scores) + sum(result.minus_scores)
        assert abs(gap) > 1e-3
        assert total == pytest.approx(gap, abs=0.02 * abs(gap) + 1e-4)
        assert result.relative_delta < 0.02


def test_delta_shrinks_with_more_steps():
    lm = load_model("tiny-random-llama")
    coarse = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4, tolerance=None)
    fine = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=64, tolerance=None)
    assert abs(fine.delta) < abs(coarse.delta)


def test_chunked_and_unchunked_agree(lm):
    whole = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=12, chunk_size=12, tolerance=None)
    chunked = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=12, chunk_size=5, tolerance=None)
    assert whole.chunk_size == 12 and chunked.chunk_size == 5
    torch.testing.assert_close(torch.tensor(whole.plus_scores), torch.tensor(chunked.plus_scores), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(whole.minus_scores), torch.tensor(chunked.minus_scores), atol=1e-5,
                               rtol=1e-4)


def test_matches_step_by_step_reference():
    lm = load_model("tiny-random-llama")
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)
    ours = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=10, points="gauss-legendre", tolerance=None)
    ref = reference_attribute(lm, example, steps=10, points="gauss-legendre")
    torch.testing.assert_close(torch.tensor(ours.plus_scores), torch.tensor(ref.plus_scores), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(torch.tensor(ours.minus_scores), torch.tensor(ref.minus_scores), atol=1e-4, rtol=1e-3)


def test_swapping_answers_flips_the_sign():
    lm = load_model("tiny-random-llama")
    a = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=16, tolerance=None)
    b = attribute(lm, PROMPT, REJECTED, CHOSEN, steps=16, tolerance=None)
    assert a.f_input == pytest.approx(-b.f_input, abs=1e-4)
    torch.testing.assert_close(torch.tensor(a.scores), -torch.tensor(b.scores), atol=1e-4, rtol=1e-3)


def test_weights_stay_frozen():
    lm = load_model("tiny-random-llama")
    attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4)
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert all(p.grad is None for p in lm.model.parameters())


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": ""}, "empty"),
    ({"prompt": "   \n"}, "empty"),
    ({"chosen": "same", "rejected": "same"}, "identical"),
    ({"steps": 0}, "steps"),
    ({"steps": 100000}, "steps"),
    ({"target": "middle"}, "target"),
    ({"baseline": "noise"}, "baseline"),
    ({"prompt": "x" * 30000}, "limit"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    lm = load_model("tiny-random-llama")
    args = {"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED, **kwargs}
    with pytest.raises(InputError, match=message):
        attribute(lm, **args)


def test_text_model_refuses_an_image():
    from PIL import Image

    lm = load_model("tiny-random-llama")
    with pytest.raises(InputError, match="text-only"):
        attribute(lm, PROMPT, CHOSEN, REJECTED, image=Image.new("RGB", (8, 8)))
