"""Integration rules, the tolerance mode and completeness: on tiny random models, and (slow) on the embedded model."""

import math

import numpy as np
import pytest
import torch

from benchmarks.reference import reference_attribute
from grains.attribution import (
    AttributionResult,
    attribute,
    attribute_example,
    within_tolerance,
)
from grains.encoding import encode_example
from grains.errors import InputError
from grains.models import load_model
from grains.quadrature import Panel, graded_panels, integration_points, make_panels, rule_nodes

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", "Paris is the capital.", "London, I think."


def test_graded_rule_reaches_far_below_gauss_legendre():
    graded, _ = integration_points(16, "graded")
    gl, _ = integration_points(32, "gauss-legendre")
    assert min(gl) > 1e-3  # why fixed rules miss the RMSNorm transition
    assert min(graded) < 1e-9 and sum(a < 1e-3 for a in graded) >= 5


def test_graded_rule_integrates_a_log_scale_transition():
    # g(a) = d/da tanh(log10(a) + 5): f moves by ~2 between a = 1e-7 and 1e-3, as f does on Gemma-3-270M
    def f(a):
        return np.tanh(np.log10(a) + 5)

    def g(a):
        return (1 - np.tanh(np.log10(a) + 5) ** 2) / (a * np.log(10))

    exact = f(1.0) - (-1.0)  # f(0) = -1 (limit)
    for rule, tol in (("graded", 0.03), ("gauss-legendre", None)):
        alphas, weights = rule_nodes(make_panels(32, rule))
        err = abs(float(np.sum(weights * g(alphas))) - exact) / abs(exact)
        if tol is None:
            assert err > 0.5  # 32 Gauss-Legendre points miss it
        else:
            assert err < tol


def test_panel_split_covers_the_same_interval():
    for panel in (Panel(1e-9, 1e-3, 2, log=True), Panel(0.05, 1.0, 4)):
        left, right = panel.split()
        assert left.lo == panel.lo and right.hi == panel.hi and left.hi == right.lo
        a, w = rule_nodes([left, right])
        if panel.log:  # Gauss-Legendre in log a: exact for g = 1/a (f's switch near 0), close for constants
            assert np.sum(w / a) == pytest.approx(math.log(panel.hi / panel.lo), rel=1e-9)
            assert np.sum(w) == pytest.approx(panel.hi - panel.lo, rel=0.25)  # 3 decades per half
        else:
            assert np.sum(w) == pytest.approx(panel.hi - panel.lo, rel=1e-9)
    assert [p.n for p in graded_panels(16)][0] == 1


def test_graded_rule_matches_the_step_by_step_reference_on_the_same_nodes():
    lm = load_model("tiny-random-llama")
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)
    ours = attribute_example(lm, example, steps=10, points="graded")
    ref = reference_attribute(lm, example, nodes=integration_points(10, "graded"))
    torch.testing.assert_close(torch.tensor(ours.plus_scores), torch.tensor(ref.plus_scores), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(torch.tensor(ours.minus_scores), torch.tensor(ref.minus_scores), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-qwen2", "tiny-random-gemma3-text"])
@pytest.mark.parametrize("target", ["sequence", "last"])
def test_completeness_within_five_percent_on_tiny_models(name, target):
    lm = load_model(name)
    result = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=16, target=target, tolerance=0.05, max_points=256)
    gap = result.f_input - result.f_baseline
    total = sum(result.plus_scores) + sum(result.minus_scores)
    assert total - gap == pytest.approx(result.delta, abs=1e-5)
    # converged, or (a gap under 0.05 nats, as for llama's last token) "gap too small to judge" by the absolute rule
    assert result.convergence != "not converged", (gap, result.relative_delta, result.abs_relative_delta)
    assert result.converged == (abs(result.delta) <= 0.05 * abs(gap))
    assert abs(result.delta) <= 0.05 * abs(gap) or (abs(gap) < 0.05 and abs(result.delta) <= 0.0025)


def test_tolerance_mode_stops_once_reached():
    lm = load_model("tiny-random-llama")
    example = encode_example(lm, PROMPT, CHOSEN, REJECTED)
    fixed = attribute_example(lm, example, steps=16, points="graded")
    loose = max(fixed.relative_delta * 1.5, 1e-3)
    if loose >= 1:
        pytest.fail(f"tiny llama's 16-point delta is {fixed.relative_delta:.0%}; the test needs a converging model")
    # a tolerance the starting rule already meets: no refinement at all, same scores
    met = attribute_example(lm, example, steps=16, points="graded", tolerance=loose)
    assert met.gradient_evals == 16 and met.points_used == 16
    assert met.scores == pytest.approx(fixed.scores, abs=1e-6)
    # a tighter one: it refines, stops as soon as it is met, and says what it reached
    tight = fixed.relative_delta / 4
    refined = attribute_example(lm, example, steps=16, points="graded", tolerance=tight, max_points=256)
    assert refined.gradient_evals > 16
    assert within_tolerance(refined.delta, refined.f_input - refined.f_baseline,
                            sum(map(abs, refined.plus_scores + refined.minus_scores)), tight)
    # one refinement earlier it was not met: the panel split that met it was the last one
    assert refined.gradient_evals <= 256


@pytest.mark.parametrize("cap", [16, 20, 27])
def test_tolerance_mode_never_exceeds_its_cap(cap):
    lm = load_model("tiny-random-gemma3-text")
    result = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=16, tolerance=1e-7, max_points=cap)
    assert 16 <= result.gradient_evals <= cap
    assert result.tolerance == 1e-7
    assert math.isfinite(result.delta)


def test_the_default_cap_is_eight_times_the_steps():
    """An unreachable tolerance refines up to the default cap, 8 x steps: the two held-out Gemma rows that stopped
    short at 4 x steps needed 72 and 78 points (docs/ig_convergence.md, section 0c)."""
    from grains.attribution import CAP_PER_STEP

    lm = load_model("tiny-random-gemma3-text")
    result = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=8, tolerance=1e-7)
    assert CAP_PER_STEP == 8
    assert 4 * 8 < result.gradient_evals <= 8 * 8


@pytest.mark.parametrize("kwargs, message", [
    ({"tolerance": 0}, "tolerance"), ({"tolerance": 1.5}, "tolerance"), ({"tolerance": "5%"}, "tolerance"),
    ({"max_points": 8}, "cap"), ({"max_points": 100000}, "cap"), ({"points": "simpson"}, "points"),
])
def test_bad_tolerance_settings_are_clear_errors(kwargs, message):
    lm = load_model("tiny-random-llama")
    with pytest.raises(InputError, match=message):
        attribute(lm, PROMPT, CHOSEN, REJECTED, steps=16, **kwargs)


def test_delta_relative_to_the_score_mass():
    base = dict(tokens=[], scores=[], offsets=[], content_mask=[], special_mask=[], image_mask=[], prompt_text="",
                plus_tokens=["a", "b"], minus_tokens=["a", "c"], prompt_len=1, steps=4, target="sequence",
                baseline="zero", points="graded", chunk_size=4, seconds=0.0)
    # gap under 0.05 nats: 10% of the gap, but 0.07% of the scores and 0.002 nats -> its own status, not converged
    small_gap = AttributionResult(**base, plus_scores=[1.0, -0.5], minus_scores=[0.5, -0.99], f_input=0.02,
                                  f_baseline=0.0, delta=0.002)
    assert small_gap.relative_delta == pytest.approx(0.1)
    assert small_gap.abs_relative_delta == pytest.approx(0.002 / 2.99)
    assert not small_gap.converged and small_gap.convergence == "gap too small to judge"
    # 0.01 nats on that gap is beyond the absolute rule (0.0025 nats at 5%): not converged
    loose = AttributionResult(**base, plus_scores=[1.0, -0.5], minus_scores=[0.5, -0.99], f_input=0.02,
                              f_baseline=0.0, delta=0.01)
    assert loose.convergence == "not converged"
    # inflated scores do not excuse a large absolute error
    inflated = AttributionResult(**base, plus_scores=[200.0, -190.0], minus_scores=[3.0, -10.0], f_input=-3.5,
                                 f_baseline=0.0, delta=5.7)
    assert inflated.abs_relative_delta < 0.02 and not inflated.converged
    ok = AttributionResult(**base, plus_scores=[1.0, 1.0], minus_scores=[0.0, 0.0], f_input=2.0, f_baseline=0.0,
                           delta=0.09)
    assert ok.converged and ok.to_dict()["converged"] and ok.to_dict()["abs_relative_delta"] == pytest.approx(0.045)


@pytest.mark.slow
def test_embedded_model_at_the_default_settings(gemma):
    """A held-out TruthfulQA pair (row 21: not an app example) on Gemma-3-270M, whole-response target, the defaults
    of `attribute` (graded 16 points, tolerance 5%, cap 128). Measured (docs/ig_convergence.md, all 20 held-out rows
    20-39 converge): 1.5% after 20 gradient points, one refinement, so the refinement path runs on real weights too.
    Rows 31 (1.0% after 16) and 22 (2.2% after 16) were checked here as well until CI ran on a slower CPU, where the
    suite took over 10 minutes; rows 23 and 25 before them. Completeness must hold to float precision and the
    attribution must converge within its cap."""
    from grains.data import load_any, truthfulqa_to_pairs

    for row in (21,):
        _, rows = load_any("assets/data/truthfulqa.jsonl", limit=1, offset=row)
        ex = truthfulqa_to_pairs(rows)[0]
        result = attribute(gemma, ex.prompt, ex.chosen, ex.rejected)
        gap = result.f_input - result.f_baseline
        assert sum(result.plus_scores) + sum(result.minus_scores) - gap == pytest.approx(result.delta, abs=1e-3)
        assert 16 <= result.gradient_evals <= 128
        assert result.converged and result.relative_delta <= 0.05, (row, result.relative_delta)
