"""Side effects of steering: KL on neutral prompts (exactly 0 at strength 0) and repetition of continuations."""

import pytest
import torch

from grains.errors import InputError
from grains.side_effects import NeutralKL, load_neutral_prompts, measure_side_effects
from grains.steering import Steering, active_hook_count
from tests.factories import random_vector


def test_shipped_neutral_prompts_load():
    prompts = load_neutral_prompts()
    assert len(prompts) >= 50 and len(set(prompts)) == len(prompts)
    assert all(p.strip() for p in prompts)


def test_kl_is_exactly_zero_at_strength_zero_and_grows_with_strength(lm):
    meter = NeutralKL(lm, load_neutral_prompts(limit=12))
    vector = random_vector(lm)
    assert meter.per_prompt(None) == [0.0] * 12
    assert meter.mean(Steering.create(lm, vector, 1, 0.0)) == 0.0
    small = meter.mean(Steering.create(lm, vector, 1, 0.5))
    large = meter.mean(Steering.create(lm, vector, 1, 2.0))
    assert 0.0 < small < large
    assert active_hook_count(lm) == 0


def test_kl_matches_a_direct_computation(lm):
    prompts = ["The train to the city leaves at"]
    steering = Steering.create(lm, random_vector(lm), 1, 1.0)
    ids = torch.tensor([lm.encode_prompt(prompts[0]).ids])
    with torch.no_grad():
        p = torch.log_softmax(lm.model(input_ids=ids).logits[0, -1].float(), -1)
        with steering.apply(lm):
            q = torch.log_softmax(lm.model(input_ids=ids).logits[0, -1].float(), -1)
    expected = float((p.exp() * (p - q)).sum())
    assert NeutralKL(lm, prompts).mean(steering) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_prompts_of_different_lengths_batched_equal_each_alone(lm):
    from grains.side_effects import _last_logprobs

    prompts = ["Hi", "The train to the city leaves at", "Once upon a time, in a small village by the sea, there"]
    alone = []
    for prompt in prompts:
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([lm.encode_prompt(prompt).ids])).logits[0, -1]
        alone.append(torch.log_softmax(logits.float(), -1))
    assert torch.allclose(_last_logprobs(lm, prompts), torch.stack(alone), atol=1e-5)


def test_measure_at_strength_zero_reports_no_cost(lm):
    effects = measure_side_effects(lm, Steering.create(lm, random_vector(lm), 1, 0.0),
                                   prompts=load_neutral_prompts(limit=4), generations=4, max_new_tokens=8)
    assert effects.kl_mean == 0.0 and effects.within_budget
    assert effects.distinct2_steered == effects.distinct2_unsteered
    assert effects.stuck_steered == effects.stuck_unsteered
    data = effects.to_dict()
    assert data["kl_unit"] == "nats" and "KL 0.000 nats" in data["reading"]


def test_continuations_are_batched_yet_equal_each_alone_and_stoppable(lm):
    from grains.errors import Cancelled
    from grains.generation import GenerationSettings, generate_pair

    steering = Steering.create(lm, random_vector(lm), 1, 2.0)
    prompts = load_neutral_prompts(limit=5)
    seen = []
    effects = measure_side_effects(lm, steering, prompts=prompts, generations=5, max_new_tokens=8,
                                   progress=lambda f, m: seen.append((f, m)))
    alone = [generate_pair(lm, p, steering, settings=GenerationSettings(max_new_tokens=8)) for p in prompts[:3]]
    assert effects.examples == [{"prompt": p, "unsteered": a.unsteered, "steered": a.steered}
                                for p, a in zip(prompts, alone)]
    assert effects.n_generated == 5 and seen[-1] == (1.0, "cost check: 5/5 neutral continuations")
    with pytest.raises(Cancelled, match="while measuring side effects"):
        measure_side_effects(lm, steering, prompts=prompts, generations=5, should_stop=lambda: True)


def test_a_strong_push_is_reported_over_budget(lm):
    effects = measure_side_effects(lm, Steering.create(lm, random_vector(lm), [1, 2], 4.0),
                                   prompts=load_neutral_prompts(limit=6), generations=0, kl_budget=1e-6)
    assert effects.kl_mean > 1e-6 and effects.within_budget is False and "over" in effects.reading()


def test_bad_neutral_prompt_file(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"prompt": ""}\n')
    with pytest.raises(InputError, match="non-empty"):
        load_neutral_prompts(path)
