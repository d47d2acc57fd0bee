"""grains.objective: f = log P(chosen | prompt) - log P(rejected | prompt) from embeddings, as scoring computes it."""

import pytest
import torch

from grains.attribution import input_embeddings
from grains.encoding import encode_example
from grains.objective import ContrastiveObjective, SharedPromptObjective
from grains.scoring import score_pair


@pytest.mark.parametrize("target", ["sequence", "last"])
def test_objective_at_the_input_is_the_log_probability_margin(lm, target):
    example = encode_example(lm, "Is the sky blue?", " Yes, it is blue.", " No.")
    plus, minus = input_embeddings(lm, example)
    with torch.no_grad():
        value = float(ContrastiveObjective(lm, example, target)(plus, minus)[0])
        shared = float(SharedPromptObjective(lm, example, target)(plus, minus)[0])
    assert shared == pytest.approx(value, abs=1e-5)
    if target == "sequence":
        scored = score_pair(lm, "Is the sky blue?", " Yes, it is blue.", " No.")
        assert value == pytest.approx(scored.logp_chosen - scored.logp_rejected, abs=1e-4)


def test_objective_is_batched_per_point(lm):
    example = encode_example(lm, "Which animal barks?", " A dog.", " A fish that swims.")
    plus, minus = input_embeddings(lm, example)
    objective = ContrastiveObjective(lm, example)
    with torch.no_grad():
        batch = objective(torch.cat([plus, 0.5 * plus]), torch.cat([minus, 0.5 * minus]))
        one = objective(0.5 * plus, 0.5 * minus)
    assert batch.shape == (2,) and float(batch[1]) == pytest.approx(float(one[0]), abs=1e-5)
