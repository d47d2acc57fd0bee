"""The prompt-shared objective (prompt run once, KV cache repeated for s+ and s-, two backward passes) equals the
plain one: f and every gradient, the per-sequence split of the prompt's included."""

import pytest
import torch

from grains.attribution import (
    ContrastiveObjective,
    SharedPromptObjective,
    attribute_example,
    baseline_embeddings,
    input_embeddings,
)
from grains.encoding import encode_example
from grains.errors import InputError
from grains.models import load_model

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", "Paris is the capital.", "London, I think."


def _value_and_grads(objective, x, b, alphas):
    a = torch.tensor(alphas).view(-1, 1, 1)
    plus = (b[0] + a * (x[0] - b[0])).requires_grad_(True)
    minus = (b[1] + a * (x[1] - b[1])).requires_grad_(True)
    return objective.value_and_gradients(plus, minus)


def _close(a, b, tol=1e-5):
    scale = max(float(b.abs().max()), 1.0)
    assert float((a - b).abs().max()) <= tol * scale, (float((a - b).abs().max()), scale)


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-qwen2", "tiny-random-gemma3-text"])
@pytest.mark.parametrize("target", ["sequence", "last"])
def test_shared_prompt_objective_equals_the_plain_one(name, target):
    lm = load_model(name)
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)  # responses of different lengths: padding is exercised
    assert len(example.chosen.ids) != len(example.rejected.ids)
    x = input_embeddings(lm, example)
    b = baseline_embeddings(lm, example, x)
    p = example.prompt_len
    f1, gp1, gm1 = _value_and_grads(ContrastiveObjective(lm, example, target), x, b, [1e-6, 0.3, 1.0])
    f2, gp2, gm2 = _value_and_grads(SharedPromptObjective(lm, example, target), x, b, [1e-6, 0.3, 1.0])
    _close(f2, f1)
    _close(gp2, gp1)
    _close(gm2, gm1)
    # the split is real: the prompt's s+ and s- gradients differ, and neither is their sum
    assert float((gp1[:, :p] - gm1[:, :p]).abs().max()) > 1e-3
    assert float(gm1[:, :p].abs().max()) > 1e-3


def test_shared_prompt_attribution_equals_the_plain_one_per_sequence():
    lm = load_model("tiny-random-llama")
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)
    plain = attribute_example(lm, example, steps=8, share_prompt=False)
    shared = attribute_example(lm, example, steps=8, share_prompt=True)
    for name in ("scores", "plus_scores", "minus_scores"):  # build's top-k reads s+ and s- separately
        torch.testing.assert_close(torch.tensor(getattr(shared, name)), torch.tensor(getattr(plain, name)),
                                   atol=1e-5, rtol=1e-4)
    assert shared.delta == pytest.approx(plain.delta, abs=1e-4)
    assert shared.f_input == pytest.approx(plain.f_input, abs=1e-5)


LONG_PROMPT = " ".join(["The committee met on Tuesday and read every report aloud before the vote."] * 4)


def test_sharing_is_refused_where_the_logits_are_not_the_output_layers_product():
    from grains.attribution import can_share_prompt

    lm = load_model("tiny-random-gemma3-text")
    example = encode_example(lm, LONG_PROMPT, CHOSEN, REJECTED)
    assert can_share_prompt(lm, example)
    config = lm.model.config
    saved = config.final_logit_softcapping
    config.final_logit_softcapping = 30.0  # the logits are then capped after the product: sharing would skip that
    try:
        assert not can_share_prompt(lm, example)
        with pytest.raises(InputError, match="output layer"):
            attribute_example(lm, example, steps=2, share_prompt=True)
    finally:
        config.final_logit_softcapping = saved


def test_sharing_is_refused_on_a_vision_language_model():
    from PIL import Image

    from grains.attribution import can_share_prompt

    lm = load_model("tiny-random-llava")
    example = encode_example(lm, LONG_PROMPT, CHOSEN, REJECTED, image=Image.new("RGB", (64, 48), (200, 40, 40)))
    assert not can_share_prompt(lm, example)
    with pytest.raises(InputError, match="text models"):
        attribute_example(lm, example, steps=2, share_prompt=True)
