"""Exact IG along the straight path for any quadrature rule: gradients at the rule's nodes summed with its weights
(PathIntegrator), and the tolerance mode that refines the rule panel by panel until the attribution adds up
(integrate, within_tolerance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grains.quadrature import Panel

MAX_STEPS = 512
ABS_SHARE = 5  # the sum-|phi| criterion is tolerance / ABS_SHARE


@dataclass
class _PanelSums:
    """One panel's weighted gradient sums (fp32, [T, D] per sequence) and its quadrature of g(a) = df/da."""

    grad_plus: torch.Tensor
    grad_minus: torch.Tensor
    integral: float


class PathIntegrator:
    """Gradients of the contrastive objective at arbitrary alphas on the straight path x' + a (x - x'), summed with
    arbitrary weights, in chunks; and forward-only values of f on the path. This is exact IG for any quadrature rule:
    phi_i = (x_i - x'_i) * sum_j w_j grad_i(a_j)."""

    def __init__(self, objective: Any, inputs: tuple[torch.Tensor, torch.Tensor],
                 base: tuple[torch.Tensor, torch.Tensor], chunk: int):
        self.objective = objective
        self.inputs, self.base, self.chunk = inputs, base, chunk
        self.diff = (inputs[0] - base[0], inputs[1] - base[1])
        self.gradient_evals = 0
        self.forward_evals = 0
        self._f_cache: dict[float, float] = {}

    def _path(self, alphas: torch.Tensor, which: int) -> torch.Tensor:
        a = alphas.to(self.base[which].dtype).view(-1, 1, 1)
        return self.base[which] + a * self.diff[which]

    def gradient_sums(self, alphas: np.ndarray, weights: np.ndarray) -> _PanelSums:
        """sum_j w_j df/dx(a_j) for s+ and s- ([T, D] each, fp32), and sum_j w_j g(a_j)."""
        return self.panel_sums([(np.asarray(alphas), np.asarray(weights))])[0]

    def panel_sums(self, rules: list[tuple[np.ndarray, np.ndarray]]) -> list[_PanelSums]:
        """gradient_sums for several (alphas, weights) rules at once: their nodes share batches of `chunk` points,
        so a panel of 2 or 3 nodes does not pay for a pass of its own (each pass reads every weight of the model
        twice, which on a CPU costs as much as several points)."""
        owner = np.concatenate([np.full(len(a), i) for i, (a, _) in enumerate(rules)])
        a_all = torch.as_tensor(np.concatenate([np.asarray(a) for a, _ in rules]), dtype=torch.float64)
        w_all = torch.as_tensor(np.concatenate([np.asarray(w) for _, w in rules]), dtype=torch.float32)
        sums = [[torch.zeros(self.diff[k].shape[1:], dtype=torch.float32, device=self.diff[k].device) for k in (0, 1)]
                for _ in rules]
        for start in range(0, len(a_all), self.chunk):
            a = a_all[start:start + self.chunk]
            w = w_all[start:start + self.chunk].to(self.diff[0].device).view(-1, 1, 1)
            plus = self._path(a, 0).requires_grad_(True)
            minus = self._path(a, 1).requires_grad_(True)
            grads = _gradients(self.objective, plus, minus)
            rows = owner[start:start + self.chunk]
            for i in np.unique(rows):
                mine = torch.as_tensor(rows == i, device=w.device)
                for k in (0, 1):
                    sums[i][k] += (w[mine] * grads[k][mine].float()).sum(dim=0)
            self.gradient_evals += len(a)
        out = []
        for plus_sum, minus_sum in sums:
            integral = float((plus_sum * self.diff[0][0].float()).sum() + (minus_sum * self.diff[1][0].float()).sum())
            out.append(_PanelSums(plus_sum, minus_sum, integral))
        return out

    def values(self, alphas: list[float]) -> list[float]:
        """f at each alpha (forward only; values already computed are reused)."""
        todo = sorted({a for a in alphas if a not in self._f_cache})
        with torch.no_grad():
            for start in range(0, len(todo), max(self.chunk, 1) * 2):
                part = todo[start:start + self.chunk * 2]
                a = torch.tensor(part, dtype=torch.float64)
                out = self.objective(self._path(a, 0), self._path(a, 1))
                self._f_cache.update(zip(part, out.float().tolist()))
                self.forward_evals += len(part)
        return [self._f_cache[a] for a in alphas]


def _gradients(objective: Any, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """df/d plus and df/d minus: the objective's own `value_and_gradients` where it has one (SharedPromptObjective
    runs two backward passes), else autograd on f(plus, minus)."""
    own = getattr(objective, "value_and_gradients", None)
    if own is not None:
        _, grad_plus, grad_minus = own(plus, minus)
        return grad_plus, grad_minus
    grad_plus, grad_minus = torch.autograd.grad(objective(plus, minus).sum(), (plus, minus))
    return grad_plus, grad_minus


@dataclass
class IntegrationOutcome:
    """What an IG integration produced: gradient sums over the final rule and how it got there."""

    grad_plus: torch.Tensor
    grad_minus: torch.Tensor
    f_input: float
    f_baseline: float
    panels: list[Panel]
    gradient_evals: int
    forward_evals: int
    panel_errors: list[float] | None


def _phi(outcome_sums: tuple[torch.Tensor, torch.Tensor], diff: tuple[torch.Tensor, torch.Tensor]
         ) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple((s * d[0].float()).sum(dim=-1).cpu() for s, d in zip(outcome_sums, diff))  # type: ignore[return-value]


SMALL_GAP = 0.05  # nats: below it |f(x) - f(x')| is too small for a relative criterion (see convergence_status)
CONVERGED, SMALL_GAP_STATUS, NOT_CONVERGED = "converged", "gap too small to judge", "not converged"


def convergence_status(delta: float, gap: float, total_abs: float, tolerance: float) -> str:
    """Whether an attribution adds up, by the rule that fits its gap.

    "converged": |delta| <= tolerance * |f(x) - f(x')|, at the tolerance asked for, whatever the gap.
    "gap too small to judge": the gap is under SMALL_GAP = 0.05 nats (the two answers' likelihoods differ by under
    5%, e^0.05 = 1.05) and the relative rule fails; there a relative figure explodes as the gap goes to 0, so the
    absolute rule is checked instead: |delta| <= tolerance / 5 * sum |phi| (1% of the score mass at 5%) and
    |delta| <= tolerance * SMALL_GAP nats (the relative rule's allowance at the threshold, 0.0025 nats at 5%, so
    the two rules meet there). That status is never reported as plain "converged".
    "not converged": anything else.

    Args:
        delta: sum of all scores - (f(x) - f(x')).
        gap: f(x) - f(x').
        total_abs: sum of |phi| over every token.
        tolerance: e.g. 0.05.

    Returns:
        One of CONVERGED, SMALL_GAP_STATUS, NOT_CONVERGED.
    """
    if abs(delta) <= tolerance * abs(gap):
        return CONVERGED
    if abs(gap) < SMALL_GAP and abs(delta) <= tolerance / ABS_SHARE * total_abs and abs(delta) <= tolerance * SMALL_GAP:
        return SMALL_GAP_STATUS
    return NOT_CONVERGED


def within_tolerance(delta: float, gap: float, total_abs: float, tolerance: float) -> bool:
    """The tolerance loop's stopping rule: converged, or a gap too small to judge whose absolute rule holds
    (see convergence_status). An unconverged rule can inflate sum |phi| itself (Gemma-3, 32 Gauss-Legendre points:
    delta 163% of the gap but 1.5% of sum |phi|), which is why a large gap is judged by the gap alone."""
    return convergence_status(delta, gap, total_abs, tolerance) != NOT_CONVERGED


def integrate(integrator: PathIntegrator, panels: list[Panel], tolerance: float | None = None,
              max_points: int | None = None) -> IntegrationOutcome:
    """Run the rule `panels`; with a tolerance, split the panel with the largest own completeness error
    (f(hi) - f(lo) against its quadrature) until within_tolerance holds or the next split would pass `max_points`
    gradient evaluations. Panels that are not split keep their gradients."""
    sums = dict(zip(panels, integrator.panel_sums([p.nodes() for p in panels])))
    if tolerance is not None:  # the panel edges are needed as soon as the first check fails: one pass for all
        integrator.values(sorted({p.lo for p in panels} | {p.hi for p in panels}))
    f_base, f_input = integrator.values([0.0, 1.0])
    gap = f_input - f_base
    panel_errors = None

    def state() -> tuple[float, float]:
        gp = sum(sums[p].grad_plus for p in panels)
        gm = sum(sums[p].grad_minus for p in panels)
        phi_p, phi_m = _phi((gp, gm), integrator.diff)
        return sum(sums[p].integral for p in panels) - gap, float(phi_p.abs().sum() + phi_m.abs().sum())

    if tolerance is not None:
        cap = max_points if max_points is not None else MAX_STEPS
        delta, total_abs = state()
        while not within_tolerance(delta, gap, total_abs, tolerance):
            edges = sorted({p.lo for p in panels} | {p.hi for p in panels})
            f_at = dict(zip(edges, integrator.values(edges)))
            errors = {p: sums[p].integral - (f_at[p.hi] - f_at[p.lo]) for p in panels}
            worst = max(panels, key=lambda p: abs(errors[p]))
            if integrator.gradient_evals + 2 * worst.n > cap:
                break
            halves = worst.split()
            i = panels.index(worst)
            panels = panels[:i] + list(halves) + panels[i + 1:]
            del sums[worst]
            sums.update(zip(halves, integrator.panel_sums([half.nodes() for half in halves])))
            delta, total_abs = state()
        edges = sorted({p.lo for p in panels} | {p.hi for p in panels})
        f_at = dict(zip(edges, integrator.values(edges)))
        panel_errors = [sums[p].integral - (f_at[p.hi] - f_at[p.lo]) for p in panels] if len(panels) > 1 else None
    return IntegrationOutcome(
        grad_plus=sum(sums[p].grad_plus for p in panels), grad_minus=sum(sums[p].grad_minus for p in panels),
        f_input=f_input, f_baseline=f_base, panels=panels, gradient_evals=integrator.gradient_evals,
        forward_evals=integrator.forward_evals, panel_errors=panel_errors,
    )
