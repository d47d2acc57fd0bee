"""grains.integration: exact IG for any rule (completeness), the tolerance mode's refinement and its cap."""

import pytest
import torch

from grains.integration import PathIntegrator, integrate, within_tolerance
from grains.quadrature import make_panels


def _inputs(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(1, 5, 3, generator=g), torch.randn(1, 4, 3, generator=g))
    return x, (torch.zeros_like(x[0]), torch.zeros_like(x[1]))


def cubic(plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    """f = sum(p^3) - sum(m^2): a polynomial along the straight path (gradients quadratic in a)."""
    return (plus**3).sum(dim=(1, 2)) - (minus**2).sum(dim=(1, 2))


def sharp(plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    """f = 3 tanh(4 sum(p)) - sum(m^2): nearly a step near a = 0 along the path, which few Gauss-Legendre nodes
    miss (with the inputs below, sum(p) = 15 and the gap is about 3)."""
    return 3 * torch.tanh(4 * plus.sum(dim=(1, 2))) - (minus**2).sum(dim=(1, 2))


def test_completeness_is_exact_for_a_polynomial_path():
    inputs, base = _inputs()
    integrator = PathIntegrator(cubic, inputs, base, chunk=3)
    outcome = integrate(integrator, make_panels(4, "gauss-legendre"))
    phi = sum(float((s * d[0]).sum()) for s, d in zip((outcome.grad_plus, outcome.grad_minus), integrator.diff))
    assert phi == pytest.approx(outcome.f_input - outcome.f_baseline, rel=1e-5)
    assert outcome.gradient_evals == 4 and integrator.gradient_evals == 4


def test_tolerance_mode_refines_until_converged_and_respects_its_cap():
    inputs = (torch.ones(1, 5, 3), 0.1 * torch.ones(1, 4, 3))
    base = (torch.zeros_like(inputs[0]), torch.zeros_like(inputs[1]))
    plain = integrate(PathIntegrator(sharp, inputs, base, chunk=4), make_panels(4, "gauss-legendre"))
    integrator = PathIntegrator(sharp, inputs, base, chunk=4)
    refined = integrate(integrator, make_panels(4, "gauss-legendre"), tolerance=0.01, max_points=200)

    def delta(outcome, diff):
        phi = sum(float((s * d[0]).sum()) for s, d in zip((outcome.grad_plus, outcome.grad_minus), diff))
        return phi - (outcome.f_input - outcome.f_baseline)

    gap = refined.f_input - refined.f_baseline
    assert gap == pytest.approx(3 * torch.tanh(torch.tensor(60.0)).item() - 0.12, rel=1e-5)
    assert abs(delta(plain, integrator.diff)) > 0.01 * abs(gap)  # the fixed 4-point rule is off
    assert abs(delta(refined, integrator.diff)) <= 0.01 * abs(gap)  # refined until within tolerance
    assert 4 < refined.gradient_evals <= 200 and len(refined.panels) > 1
    capped = integrate(PathIntegrator(sharp, inputs, base, chunk=4), make_panels(4, "gauss-legendre"),
                       tolerance=1e-9, max_points=12)
    assert capped.gradient_evals <= 12


def test_within_tolerance_uses_the_gap_or_the_score_mass_for_a_tiny_gap():
    assert within_tolerance(0.04, 1.0, 10.0, 0.05)
    assert not within_tolerance(0.06, 1.0, 3.0, 0.05)
    assert within_tolerance(0.009, 1e-4, 1.0, 0.05)  # gap near 0: 0.9% of sum |phi| and under 0.05 nats
    assert not within_tolerance(0.02, 1e-4, 1.0, 0.05)  # 2% of sum |phi|: over 1%
    assert not within_tolerance(0.3, 1e-4, 100.0, 0.05)  # under 1% of the mass but over 0.05 nats


def test_panels_share_batches_and_give_the_same_sums_as_one_pass_each():
    """panel_sums packs the nodes of several panels into batches of `chunk` points: the same sums as a pass per
    panel (to float precision), in ceil(nodes / chunk) passes instead of one per panel."""
    inputs, base = _inputs(1)
    panels = make_panels(16, "graded")
    calls = []

    def counted(plus, minus):
        calls.append(plus.shape[0])
        return sharp(plus, minus)

    separate = [PathIntegrator(sharp, inputs, base, chunk=8).gradient_sums(*p.nodes()) for p in panels]
    packed = PathIntegrator(counted, inputs, base, chunk=8).panel_sums([p.nodes() for p in panels])
    assert len(panels) > 2 and calls == [8, 8]  # 16 nodes in two passes, not one per panel
    for one, both in zip(separate, packed):
        assert torch.allclose(one.grad_plus, both.grad_plus, rtol=1e-5, atol=1e-6)
        assert torch.allclose(one.grad_minus, both.grad_minus, rtol=1e-5, atol=1e-6)
        assert both.integral == pytest.approx(one.integral, rel=1e-5, abs=1e-6)
