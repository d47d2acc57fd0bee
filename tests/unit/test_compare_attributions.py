"""Re-attribution under steering: the difference of two attributions (tiny random Llama, random vector)."""

import pytest
import torch

from grains.attribution import attribute
from grains.compare_attributions import attribution_difference
from grains.errors import InputError
from grains.steering import Steering
from grains.vectors import SteeringVector

PROMPT, CHOSEN, REJECTED = "The weather this weekend", " was lovely.", " was awful."


@pytest.fixture(scope="module")
def vector(lm):
    gen = torch.Generator().manual_seed(0)
    return SteeringVector(directions={i: torch.randn(lm.hidden_size, generator=gen) for i in range(lm.num_layers)},
                          layer_norms={i: 3.0 for i in range(lm.num_layers)}, model_id=lm.model_id,
                          hidden_size=lm.hidden_size, num_layers=lm.num_layers, default_layer=1,
                          default_strength=1.0)


@pytest.fixture(scope="module")
def unsteered(lm):
    return attribute(lm, PROMPT, CHOSEN, REJECTED, steps=6, tolerance=None, prompt_format="raw")


def test_difference_is_steered_minus_unsteered(lm, vector, unsteered):
    steering = Steering.create(lm, vector, layers=1, strength=2.0)
    steered = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=6, tolerance=None, prompt_format="raw",
                        steering=steering)
    diff = attribution_difference(unsteered, steered)
    assert diff.tokens == unsteered.tokens == steered.tokens
    assert len(diff.scores) == len(unsteered.scores)
    for d, u, s in zip(diff.scores, unsteered.scores, steered.scores):
        assert d == pytest.approx(s - u, abs=1e-12)
    # a strong random vector moves the model: the margin and some scores change
    assert abs(diff.margin_change) > 1e-4
    assert max(abs(d) for d in diff.scores) > 1e-5
    assert diff.margin_change == pytest.approx(steered.f_input - unsteered.f_input)
    data = diff.to_dict()
    assert data["steering"]["strength"] == 2.0 and data["margin_change"] == pytest.approx(diff.margin_change)
    top = diff.top_changes(3)
    assert [t["index"] for t in top] == sorted(range(len(diff.scores)), key=lambda i: -abs(diff.scores[i]))[:3]
    assert data["converged"] == (unsteered.converged and steered.converged)


def test_strength_zero_gives_zero_difference(lm, vector, unsteered):
    steered = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=6, tolerance=None, prompt_format="raw",
                        steering=Steering.create(lm, vector, layers=1, strength=0.0))
    diff = attribution_difference(unsteered, steered)
    assert diff.margin_change == 0.0
    scale = max(abs(u) for u in unsteered.scores)
    assert max(abs(d) for d in diff.scores) <= 1e-5 * scale + 1e-9  # batching noise only: the hook is the identity


def test_different_prompts_are_refused(lm, unsteered):
    other = attribute(lm, PROMPT + " at the lake", CHOSEN, REJECTED, steps=4, tolerance=None, prompt_format="raw")
    with pytest.raises(InputError, match="same prompt tokens"):
        attribution_difference(unsteered, other)
