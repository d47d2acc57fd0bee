"""Integration rules for Integrated Gradients on [0, 1]: which alphas to take gradients at, and with what weights.

IG needs the integral of df(x' + a (x - x'))/dx over a in [0, 1]. On RMSNorm models with a zero baseline most of
that integral sits in a sliver near a = 0 spread over several decades (Gemma-3-270M: f moves between a = 1e-7 and
a = 1e-2, where the input norm and then the query/key norms switch from x/sqrt(eps) to x/|x|), and fixed
Gauss-Legendre or midpoint nodes never land there. A *graded* rule covers [a_min, a0] with Gauss-Legendre nodes in
log a (a change of variables a = e^s; the weights are fitted so each log panel integrates constants and 1/a exactly,
see _log_panel_rule), [a0, 1] with Gauss-Legendre nodes in a, and [0, a_min] with one node. Every rule's weights
sum to 1, so a linear objective (constant gradient) is integrated exactly.

Every rule is a list of panels; a panel knows its interval, node count and coordinate (linear or log), so an
adaptive scheme can split the panel whose own completeness error f(hi) - f(lo) - sum_j w_j g(a_j) is largest and
keep every other panel's gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RULES = ("graded", "gauss-legendre", "midpoint")
DEFAULT_RULE = "graded"
# Where the log-spaced part starts and ends (measured on Gemma-3-270M and Qwen2.5-0.5B-Instruct with a zero
# baseline: below 1e-9 f no longer moves; above 0.05 the path is best sampled linearly).
A_MIN = 1e-9
A_JOIN = 0.05
LOG_SHARE = 0.4  # share of the points spent in [A_MIN, A_JOIN]
LOG_PANEL_NODES = 3  # a log panel needs 3 nodes for positive weights exact for constants, 1/a and log a / a
LIN_PANEL_NODES = 4


@dataclass(frozen=True)
class Panel:
    """One sub-interval [lo, hi] with `n` Gauss-Legendre nodes, in a (linear) or in log a (`log=True`)."""

    lo: float
    hi: float
    n: int
    log: bool = False

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """(alphas, weights) of this panel's rule for the integral over a."""
        x, w = np.polynomial.legendre.leggauss(self.n)
        if self.log:
            return _log_panel_rule(self.lo, self.hi, x)
        return self.lo + (x + 1) * (self.hi - self.lo) / 2, w * (self.hi - self.lo) / 2

    def split(self) -> tuple[Panel, Panel]:
        """Two halves (geometric halves for a log panel), each with the same node count."""
        mid = math.sqrt(self.lo * self.hi) if self.log else (self.lo + self.hi) / 2
        return Panel(self.lo, mid, self.n, self.log), Panel(mid, self.hi, self.n, self.log)


def _log_panel_rule(lo: float, hi: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes at the Gauss-Legendre points in s = log a; weights fitted so that the rule is exact for constants and
    for g(a) = P(log a) / a with P of degree < n - 1 (da = a ds, so 1/a is a constant in s).

    Plain Gauss-Legendre in s (weights w_s * a) is exact for P(log a) / a up to degree 2n - 1 but not for a constant:
    a constant's mass over many decades sits in the top one, between the nodes, so its weights summed to 0.955 at
    8 points and a linear objective missed 4.5% of its gap. Fitting the weights to {1, 1/a, log a / a, ...} (n
    conditions, n nodes) makes every rule integrate constants exactly (so a linear objective adds up to float
    precision) and keeps 1/a exact, the profile of f's switch near a = 0 on RMSNorm models."""
    s_lo, s_hi = math.log(lo), math.log(hi)
    half = (s_hi - s_lo) / 2
    alphas = np.exp(s_lo + (x + 1) * half)
    alphas[0], alphas[-1] = max(alphas[0], lo), min(alphas[-1], hi)
    degrees = np.arange(len(x) - 1)
    rows = np.vstack([np.ones_like(alphas), x[None, :] ** degrees[:, None] / alphas[None, :]])
    moments = np.concatenate([[hi - lo], half * (1 - (-1.0) ** (degrees + 1)) / (degrees + 1)])
    return alphas, np.linalg.solve(rows, moments)


def uniform_panels(steps: int, kind: str) -> list[Panel]:
    """Gauss-Legendre on [0, 1] as one panel, or the midpoint rule as `steps` one-node panels."""
    if kind == "gauss-legendre":
        return [Panel(0.0, 1.0, steps)]
    if kind == "midpoint":
        return [Panel(i / steps, (i + 1) / steps, 1) for i in range(steps)]
    raise ValueError(f"unknown uniform rule {kind!r}")


def graded_panels(steps: int, a_min: float | None = None, a_join: float | None = None, log_share: float | None = None,
                  log_nodes: int | None = None, lin_nodes: int | None = None) -> list[Panel]:
    """`steps` nodes: one on [0, a_min], about `log_share` of them in log-a panels of `log_nodes` over
    [a_min, a_join], the rest in equal linear panels of up to `lin_nodes` over [a_join, 1].

    Below 5 points there is no room for a log panel of 3 nodes: plain Gauss-Legendre then."""
    if steps < 5:
        return uniform_panels(steps, "gauss-legendre")
    a_min = A_MIN if a_min is None else a_min
    a_join = A_JOIN if a_join is None else a_join
    log_share = LOG_SHARE if log_share is None else log_share
    log_nodes = LOG_PANEL_NODES if log_nodes is None else log_nodes
    lin_nodes = LIN_PANEL_NODES if lin_nodes is None else lin_nodes
    rest = steps - 1
    n_log = min(rest - 1, max(log_nodes, round(rest * log_share)))
    n_lin = rest - n_log
    panels = [Panel(0.0, a_min, 1)]
    panels += _even_panels(a_min, a_join, n_log, log_nodes, log=True, at_least=True)
    panels += _even_panels(a_join, 1.0, n_lin, lin_nodes, log=False)
    return panels


def _even_panels(lo: float, hi: float, total: int, per_panel: int, log: bool, at_least: bool = False) -> list[Panel]:
    """`total` nodes in ceil(total / per_panel) equal panels (equal in log a for a log part); with `at_least`,
    floor(total / per_panel) panels, so that none has fewer than `per_panel` nodes."""
    count = max(1, total // per_panel if at_least else math.ceil(total / per_panel))
    sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
    if log:
        edges = np.exp(np.linspace(math.log(lo), math.log(hi), count + 1))
    else:
        edges = np.linspace(lo, hi, count + 1)
    edges[0], edges[-1] = lo, hi
    return [Panel(float(edges[i]), float(edges[i + 1]), sizes[i], log) for i in range(count)]


def make_panels(steps: int, rule: str) -> list[Panel]:
    """The panels of a named rule with `steps` nodes in all."""
    if rule == "graded":
        return graded_panels(steps)
    return uniform_panels(steps, rule)


def rule_nodes(panels: list[Panel]) -> tuple[np.ndarray, np.ndarray]:
    """All (alphas, weights) of a list of panels, concatenated in panel order."""
    parts = [p.nodes() for p in panels]
    return np.concatenate([a for a, _ in parts]), np.concatenate([w for _, w in parts])


def integration_points(steps: int, rule: str = DEFAULT_RULE) -> tuple[list[float], list[float]]:
    """(alphas, weights) of a named rule with `steps` nodes on [0, 1]; the weights sum to 1 to float precision for
    every rule (the graded rule's log panels are fitted to be exact for constants and for the 1/a profile).

    Args:
        steps: number of nodes (gradient evaluations).
        rule: "graded" (log-spaced near 0, Gauss-Legendre above), "gauss-legendre" or "midpoint".

    Returns:
        The nodes and their weights as lists of floats.
    """
    alphas, weights = rule_nodes(make_panels(steps, rule))
    return alphas.tolist(), weights.tolist()
