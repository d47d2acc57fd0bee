"""Side-by-side generation: batched pair equals separate runs, identity at 0, streaming, KV-cache steering."""

import pytest
import torch

from grains.errors import Cancelled, InputError
from grains.generation import GenerationSettings, generate_one, generate_pair, generate_pairs, stream_pair
from grains.models import load_model
from grains.steering import Steering, active_hook_count
from tests.factories import random_vector

PROMPT = "What is the capital of France?"
SETTINGS = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module", params=["tiny-random-llama", "tiny-random-gemma3-text"])
def lm(request):
    return load_model(request.param)


def test_strength_zero_gives_identical_text(lm):
    pair = generate_pair(lm, PROMPT, random_vector(lm), layer=1, strength=0.0, settings=SETTINGS)
    assert pair.unsteered == pair.steered
    assert pair.unsteered  # something was generated


def test_batched_pair_equals_two_separate_runs(lm):
    vector = random_vector(lm)
    pair = generate_pair(lm, PROMPT, vector, layer=1, strength=1.5, settings=SETTINGS)
    alone_unsteered = generate_one(lm, PROMPT, settings=SETTINGS)
    alone_steered = generate_one(lm, PROMPT, vector, layer=1, strength=1.5, settings=SETTINGS)
    assert pair.unsteered == alone_unsteered
    assert pair.steered == alone_steered
    assert pair.steered != pair.unsteered  # the vector does something on this model
    assert active_hook_count(lm) == 0


PROMPTS_OF_SEVERAL_LENGTHS = ["Hi", "The weather today is", "A long time ago, in a small village by the sea, there",
                              PROMPT]


def test_prompts_batched_with_left_padding_equal_each_pair_alone(lm):
    """Padding is masked and positions follow the mask: every text equals its own one-prompt generate call."""
    steering = Steering.create(lm, random_vector(lm), 1, 1.5)
    settings = GenerationSettings(max_new_tokens=10, stop=(".",))
    batched = generate_pairs(lm, PROMPTS_OF_SEVERAL_LENGTHS, steering, settings=settings)
    alone = [generate_pair(lm, p, steering, settings=settings) for p in PROMPTS_OF_SEVERAL_LENGTHS]
    assert batched == alone
    assert any(p.steered != p.unsteered for p in batched)  # the steered rows are steered, the others not
    assert active_hook_count(lm) == 0


def test_batched_pairs_at_strength_zero_are_identical_and_stop_on_request(lm):
    steering = Steering.create(lm, random_vector(lm), 1, 0.0)
    pairs = generate_pairs(lm, PROMPTS_OF_SEVERAL_LENGTHS, steering, settings=SETTINGS)
    assert all(p.unsteered == p.steered for p in pairs) and generate_pairs(lm, [], steering) == []
    polls = []

    def stop_after_three_tokens() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled):
        generate_pairs(lm, PROMPTS_OF_SEVERAL_LENGTHS, Steering.create(lm, random_vector(lm), 1, 1.0),
                       settings=GenerationSettings(max_new_tokens=200), should_stop=stop_after_three_tokens)
    assert len(polls) < 10  # polled at each token, so it ended long before 200 tokens
    assert active_hook_count(lm) == 0


def test_a_vision_language_model_takes_one_call_per_prompt_with_the_same_texts():
    vlm = load_model("tiny-random-llava")
    steering = Steering.create(vlm, random_vector(vlm), 1, 1.5)
    prompts = PROMPTS_OF_SEVERAL_LENGTHS[:2]
    batched = generate_pairs(vlm, prompts, steering, settings=SETTINGS)
    assert batched == [generate_pair(vlm, p, steering, settings=SETTINGS) for p in prompts]
    with pytest.raises(Cancelled):
        generate_pairs(vlm, prompts, steering, settings=SETTINGS, should_stop=lambda: True)
    assert active_hook_count(vlm) == 0


def test_steering_reaches_every_decoded_token(lm):
    """Under the KV cache each step has sequence length 1: the hook must still fire there."""
    vector = random_vector(lm)
    calls = []
    handle = lm.adapter.layers[1].register_forward_hook(lambda m, a, o: calls.append(
        (o if isinstance(o, torch.Tensor) else o[0]).shape[1]))
    try:
        generate_pair(lm, PROMPT, vector, layer=1, strength=1.0, settings=GenerationSettings(max_new_tokens=5))
    finally:
        handle.remove()
    assert calls.count(1) >= 4  # one-token steps after the prompt


def test_stream_yields_growing_texts_and_ends_equal_to_batch(lm):
    vector = random_vector(lm)
    chunks = list(stream_pair(lm, PROMPT, vector, layer=1, strength=1.5, settings=SETTINGS))
    assert len(chunks) >= 2
    assert all(len(b[0]) >= len(a[0]) for a, b in zip(chunks, chunks[1:]))
    final = generate_pair(lm, PROMPT, vector, layer=1, strength=1.5, settings=SETTINGS)
    assert chunks[-1] == (final.unsteered, final.steered)
    assert active_hook_count(lm) == 0


def test_closing_the_stream_early_removes_the_hook(lm):
    vector = random_vector(lm)
    stream = stream_pair(lm, PROMPT, vector, layer=1, strength=1.5, settings=GenerationSettings(max_new_tokens=200))
    next(stream)
    stream.close()
    assert active_hook_count(lm) == 0
    assert generate_pair(lm, PROMPT, settings=SETTINGS).unsteered == generate_one(lm, PROMPT, settings=SETTINGS)


def test_sampling_is_reproducible_with_a_seed(lm):
    settings = GenerationSettings(max_new_tokens=10, do_sample=True, temperature=1.0, seed=7)
    first = generate_pair(lm, PROMPT, settings=settings)
    again = generate_pair(lm, PROMPT, settings=settings)
    assert (first.unsteered, first.steered) == (again.unsteered, again.steered)


@pytest.mark.parametrize("settings, message", [
    (GenerationSettings(max_new_tokens=0), "max_new_tokens"),
    (GenerationSettings(max_new_tokens=5000), "max_new_tokens"),
    (GenerationSettings(temperature=0.0, do_sample=True), "temperature"),
    (GenerationSettings(top_p=1.5), "top_p"),
])
def test_bad_settings(lm, settings, message):
    with pytest.raises(InputError, match=message):
        generate_pair(lm, PROMPT, settings=settings)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_pair_at_strength_zero_is_identical(lm, seed):
    """Both rows share their random draws, so with sampling on and no steering effect the texts are equal."""
    settings = GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.3, top_p=0.95, seed=seed)
    pair = generate_pair(lm, PROMPT, random_vector(lm), layer=1, strength=0.0, settings=settings)
    assert pair.unsteered == pair.steered and pair.unsteered


def test_sampling_depends_on_the_seed(lm):
    texts = {generate_pair(lm, PROMPT, settings=GenerationSettings(max_new_tokens=16, do_sample=True, seed=s)
                           ).unsteered for s in range(4)}
    assert len(texts) > 1


def test_shared_uniform_sampler_follows_the_distribution():
    """Inverse-CDF sampling with one uniform per step: token frequencies match the tempered, top-p filtered
    probabilities, and two rows with equal logits always pick the same token."""
    from grains.generation import SharedUniformSampler

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    sampler = SharedUniformSampler(temperature=1.0, top_p=0.9, seed=0)
    counts = torch.zeros(4)
    for _ in range(4000):
        out = sampler(torch.zeros(2, 1, dtype=torch.long), logits.clone())
        picks = out.argmax(dim=-1)
        assert picks[0] == picks[1]
        counts[picks[0]] += 1
    # top_p = 0.9 keeps 0.5, 0.3, 0.15 (mass above each: 0, 0.5, 0.8 < 0.9) and drops 0.05
    expected = torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95
    assert counts[3] == 0
    assert torch.allclose(counts / 4000, expected, atol=0.03)


def test_sampler_shares_draws_within_a_pair_and_not_across_pairs():
    """rows_per_group=2: rows 0-1 and rows 2-3 each pick together, and the two pairs pick independently (two equally
    likely tokens: the pairs agree about half the time, where one shared draw made them agree always)."""
    from grains.generation import SharedUniformSampler

    logits = torch.log(torch.full((4, 2), 0.5))
    sampler = SharedUniformSampler(temperature=1.0, top_p=1.0, seed=3, rows_per_group=2)
    agree = 0
    for _ in range(2000):
        picks = sampler(torch.zeros(4, 1, dtype=torch.long), logits.clone()).argmax(dim=-1)
        assert picks[0] == picks[1] and picks[2] == picks[3]
        agree += int(picks[0] == picks[2])
    assert 0.45 < agree / 2000 < 0.55


def test_sampled_pairs_draw_independently_across_prompts(lm):
    """The same prompt twice in one generate_pairs call: each pair's unsteered and steered rows match at strength 0
    (shared draws), while the two pairs' samples differ for some seed (they used to be copies of each other)."""
    differs = False
    for seed in range(4):
        settings = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.5, seed=seed)
        first, second = generate_pairs(lm, [PROMPT, PROMPT], Steering.create(lm, random_vector(lm), 1, 0.0),
                                       settings=settings)
        assert first.unsteered == first.steered and second.unsteered == second.steered
        differs |= first.unsteered != second.unsteered
    assert differs
