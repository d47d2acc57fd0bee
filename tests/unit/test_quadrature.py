"""grains.quadrature: the integration rules IG takes its gradients at (nodes, weights, panels)."""

import math

import numpy as np
import pytest

from grains.quadrature import A_JOIN, A_MIN, Panel, graded_panels, integration_points, make_panels, rule_nodes


@pytest.mark.parametrize("rule", ["graded", "gauss-legendre", "midpoint"])
@pytest.mark.parametrize("steps", [1, 3, 4, 5, 8, 12, 16, 33])
def test_weights_sum_to_one_and_nodes_lie_in_the_unit_interval(rule, steps):
    alphas, weights = integration_points(steps, rule)
    assert len(alphas) == len(weights) == steps
    assert math.isclose(sum(weights), 1.0, rel_tol=1e-13)  # every rule integrates constants exactly
    assert all(0.0 <= a <= 1.0 for a in alphas) and all(w > 0 for w in weights)


def test_gauss_legendre_integrates_polynomials_exactly():
    alphas, weights = map(np.asarray, integration_points(4, "gauss-legendre"))
    for degree in range(8):  # n nodes: exact up to degree 2n - 1
        assert float(weights @ alphas**degree) == pytest.approx(1 / (degree + 1), rel=1e-12)


def test_graded_rule_resolves_the_sliver_near_zero():
    """f(a) = max(log10(a), -9) + 9 (the shape of f near a = 0 on RMSNorm models): its derivative is spread over
    decades of a. The graded rule integrates it to 0.2% with 16 points and 0.01% with 32 (log panels are Gauss-Legendre
    in log a, exact for 1/a; rescaling their weights to integrate constants, as before 2026-12, gave 12% and 1.2%);
    Gauss-Legendre misses it by a third."""
    def g(a):
        return np.where(a > 1e-9, 1 / (a * math.log(10)), 0.0)

    for steps, tolerance in ((16, 0.002), (32, 1e-4)):
        graded = np.asarray(integration_points(steps, "graded"))
        legendre = np.asarray(integration_points(steps, "gauss-legendre"))
        assert float(graded[1] @ g(graded[0])) == pytest.approx(9.0, rel=tolerance)
        assert abs(float(legendre[1] @ g(legendre[0])) - 9.0) > 3.0
        assert min(graded[0]) < 1e-8 and sum(a < A_JOIN for a in graded[0]) >= 5


def test_graded_panels_tile_the_interval_and_split_keeps_the_integral():
    panels = graded_panels(16)
    assert panels[0].lo == 0.0 and panels[-1].hi == 1.0 and panels[0].hi == A_MIN
    assert all(a.hi == pytest.approx(b.lo) for a, b in zip(panels, panels[1:]))
    assert sum(p.n for p in panels) == 16
    log_panel = next(p for p in panels if p.log)
    left, right = log_panel.split()
    assert left.hi == pytest.approx(math.sqrt(log_panel.lo * log_panel.hi)) and left.log and right.log
    for p in (log_panel, Panel(0.2, 0.6, 3)):
        whole = p.nodes()[1].sum()
        halves = sum(h.nodes()[1].sum() for h in p.split())
        # constants: exact on every panel, log panels too, and so on both halves of a split
        assert whole == pytest.approx(p.hi - p.lo, rel=1e-12) and halves == pytest.approx(p.hi - p.lo, rel=1e-12)


def test_few_points_fall_back_to_gauss_legendre_and_rule_nodes_concatenate():
    assert make_panels(3, "graded") == [Panel(0.0, 1.0, 3)] and make_panels(4, "graded") == [Panel(0.0, 1.0, 4)]
    panels = make_panels(8, "midpoint")
    alphas, weights = rule_nodes(panels)
    assert np.allclose(alphas, (np.arange(8) + 0.5) / 8) and np.allclose(weights, 1 / 8)
