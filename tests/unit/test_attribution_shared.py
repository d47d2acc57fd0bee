"""The prompt-shared objective (prompt run once, KV cache repeated for s+ and s-) equals the plain one."""

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
from grains.models import load_model

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", "Paris is the capital.", "London, I think."


def _value_and_grads(objective, x, b, alphas):
    a = torch.tensor(alphas).view(-1, 1, 1)
    plus = (b[0] + a * (x[0] - b[0])).requires_grad_(True)
    minus = (b[1] + a * (x[1] - b[1])).requires_grad_(True)
    f = objective(plus, minus)
    return (f, *torch.autograd.grad(f.sum(), (plus, minus)))


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
    _close(gp2[:, :p], gp1[:, :p] + gm1[:, :p])  # the one prompt gets both sequences' gradient
    _close(gp2[:, p:], gp1[:, p:])
    _close(gm2[:, p:], gm1[:, p:])
    assert float(gm2[:, :p].abs().max()) == 0.0


def test_shared_prompt_attribution_keeps_the_prompt_heatmap():
    lm = load_model("tiny-random-llama")
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)
    plain = attribute_example(lm, example, steps=8)
    shared = attribute_example(lm, example, steps=8, share_prompt=True)
    torch.testing.assert_close(torch.tensor(shared.scores), torch.tensor(plain.scores), atol=1e-5, rtol=1e-4)
    assert shared.delta == pytest.approx(plain.delta, abs=1e-4)
    assert shared.f_input == pytest.approx(plain.f_input, abs=1e-5)
