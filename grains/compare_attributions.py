"""Re-attribution under steering: the per-token difference between the steered and the unsteered model's heatmaps
of the same example (prompt, chosen, rejected, format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grains.errors import InputError


@dataclass
class AttributionDifference:
    """Steered minus unsteered contrastive-IG scores over the same prompt tokens.

    `scores[i]` = steered.scores[i] - unsteered.scores[i]; `margin_change` = the change of f = log P(chosen) -
    log P(rejected) that the steering causes (steered.f_input - unsteered.f_input). Both results' convergence is
    kept: a difference is only as good as the worse of the two attributions."""

    tokens: list[str]
    scores: list[float]
    unsteered_scores: list[float]
    steered_scores: list[float]
    margin_unsteered: float
    margin_steered: float
    converged_unsteered: bool
    converged_steered: bool
    steering: dict[str, Any] = field(default_factory=dict)

    @property
    def margin_change(self) -> float:
        """f(chosen) - f(rejected) with steering minus without: how far the vector moved the preference."""
        return self.margin_steered - self.margin_unsteered

    @property
    def converged(self) -> bool:
        """Both attributions converged (else the difference mixes integration error into the scores)."""
        return self.converged_unsteered and self.converged_steered

    def top_changes(self, n: int = 5) -> list[dict[str, Any]]:
        """The `n` tokens whose score changed most (by |difference|), largest first.

        Args:
            n: how many tokens.

        Returns:
            [{"index", "token", "difference", "unsteered", "steered"}, ...].
        """
        order = sorted(range(len(self.scores)), key=lambda i: -abs(self.scores[i]))[: max(int(n), 0)]
        return [{"index": i, "token": self.tokens[i], "difference": self.scores[i],
                 "unsteered": self.unsteered_scores[i], "steered": self.steered_scores[i]} for i in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tokens, per-token differences, both margins and their change, convergence, the steering."""
        return {"tokens": list(self.tokens), "scores": list(self.scores), "margin_unsteered": self.margin_unsteered,
                "margin_steered": self.margin_steered, "margin_change": self.margin_change,
                "converged": self.converged, "converged_unsteered": self.converged_unsteered,
                "converged_steered": self.converged_steered, "top_changes": self.top_changes(),
                "steering": dict(self.steering)}


def attribution_difference(unsteered: Any, steered: Any) -> AttributionDifference:
    """Steered minus unsteered prompt-token scores of two attributions of the same example.

    Args:
        unsteered: the AttributionResult of `grains.attribute(lm, prompt, chosen, rejected)`.
        steered: the AttributionResult of the same call with `steering=` (the hook on during IG).

    Returns:
        An AttributionDifference (tokens, per-token differences, both margins, both convergence flags).

    Raises:
        InputError: when the two results are not over the same prompt tokens (another prompt or format).
    """
    a_tokens, b_tokens = list(unsteered.tokens), list(steered.tokens)
    if a_tokens != b_tokens or len(unsteered.scores) != len(steered.scores):
        raise InputError("The two attributions are not over the same prompt tokens: attribute the same prompt, in "
                         "the same format, with and without the vector.")
    if getattr(unsteered, "prompt_text", None) != getattr(steered, "prompt_text", None):
        raise InputError("The two attributions saw different model inputs; use the same prompt format for both.")
    diff = [float(s) - float(u) for u, s in zip(unsteered.scores, steered.scores)]
    return AttributionDifference(
        tokens=a_tokens, scores=diff, unsteered_scores=[float(v) for v in unsteered.scores],
        steered_scores=[float(v) for v in steered.scores], margin_unsteered=float(unsteered.f_input),
        margin_steered=float(steered.f_input), converged_unsteered=bool(unsteered.converged),
        converged_steered=bool(steered.converged), steering=dict((steered.extra or {}).get("steering") or {}))
