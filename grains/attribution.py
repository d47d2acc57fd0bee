"""Contrastive Integrated Gradients: which input tokens push the model toward the chosen over the rejected answer.

f = log P(chosen | prompt) - log P(rejected | prompt). Both sequences s+ = prompt + chosen and s- = prompt + rejected
are attributed together (IG over their input embeddings), so every token of both gets a score; the prompt's heatmap
is a prompt token's score in s+ plus its score in s-. The gradient is taken at the nodes of an integration rule
(grains.quadrature: the graded rule by default) and summed with its weights, batched in chunks (PathIntegrator);
with a tolerance the rule is refined panel by panel. Completeness: sum of all scores = f(x) - f(baseline), up to
the reported convergence delta."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from grains.adapters import text_config
from grains.contrast_columns import plain_output_layer
from grains.encoding import EncodedExample, encode_example
from grains.errors import InputError
from grains.integration import (  # noqa: F401 - re-exported for callers of grains.attribution
    ABS_SHARE,
    CONVERGED,
    MAX_STEPS,
    SMALL_GAP,
    SMALL_GAP_STATUS,
    IntegrationOutcome,
    PathIntegrator,
    _phi,
    convergence_status,
    integrate,
    within_tolerance,
)
from grains.logprobs import ROW_BLOCK, target_logprobs  # noqa: F401 - re-exported
from grains.memory import auto_chunk_size, ig_bytes_per_point, oom_guard
from grains.objective import ContrastiveObjective, SharedPromptObjective, Target
from grains.quadrature import DEFAULT_RULE, RULES, make_panels
from grains.viz.display import Renderable, read_json_source

if TYPE_CHECKING:
    from grains.models import LoadedModel

Baseline = Literal["zero", "pad"]
IntegrationPoints = Literal["graded", "gauss-legendre", "midpoint"]
DEFAULT_STEPS = 16  # starting points of the default graded rule
CAP_PER_STEP = 8  # default cap on gradient points: 8 x steps (128 at the default 16; see docs/ig_convergence.md 0c)
DEFAULT_TOLERANCE = 0.05  # |delta| <= 5% of |f(x) - f(x')|: the convergence criterion (see convergence_status)


@dataclass
class AttributionResult(Renderable):
    """Per-token IG scores. `tokens`/`scores` cover the prompt (s+ score + s- score); `plus_*`/`minus_*` the full
    sequences. `delta` = sum of all scores - (f_input - f_baseline).

    Args:
        tokens, scores, offsets: the prompt's tokens, their scores (s+ score + s- score) and character offsets.
        plus_tokens, plus_scores, minus_tokens, minus_scores: every token of s+ and s- with its score.
        f_input, f_baseline, delta: f at the input and at the baseline, and the completeness gap.
        steps, target, baseline, points, tolerance: the settings; points_used, gradient_evals, forward_evals and
            seconds what it cost.

    It renders and serialises itself: `_repr_html_()` (a notebook shows the heatmaps and whether IG converged),
    `show()`, `to_json(path)` and `AttributionResult.from_json(text_or_path)`.

    Example:
        >>> result = grains.attribute(lm, "The movie was", " great", " awful")
        >>> result.converged, result.relative_delta
        >>> result.show()
        >>> again = grains.AttributionResult.from_json(result.to_json())
    """

    tokens: list[str]
    scores: list[float]
    offsets: list[tuple[int, int]]
    content_mask: list[bool]
    special_mask: list[bool]
    image_mask: list[bool]
    prompt_text: str
    plus_tokens: list[str]
    plus_scores: list[float]
    minus_tokens: list[str]
    minus_scores: list[float]
    prompt_len: int
    f_input: float
    f_baseline: float
    delta: float
    steps: int
    target: str
    baseline: str
    points: str
    chunk_size: int
    seconds: float
    image_grid: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tolerance: float | None = None  # the tolerance asked for (None: the fixed rule only)
    points_used: int = 0  # nodes of the final rule
    gradient_evals: int = 0  # gradient evaluations spent (points of split panels included)
    forward_evals: int = 0  # forward-only evaluations of f (f(x), f(x') and panel edges)
    panel_error: float | None = None  # sum over panels of |own completeness error| (tolerance mode)

    @property
    def relative_delta(self) -> float:
        """|delta| relative to |f(x) - f(baseline)|: how far IG is from converged."""
        return abs(self.delta) / max(abs(self.f_input - self.f_baseline), 1e-8)

    @property
    def abs_relative_delta(self) -> float:
        """|delta| relative to the sum of |phi| over every token of s+ and s-: the error against the scores shown
        (stays meaningful when f(x) - f(baseline) is near 0)."""
        total = sum(abs(s) for s in self.plus_scores) + sum(abs(s) for s in self.minus_scores)
        return abs(self.delta) / max(total, 1e-8)

    @property
    def convergence(self) -> str:
        """"converged" (|delta| <= tolerance x |f(x) - f(baseline)|, at the tolerance asked for, 5% when none was),
        "gap too small to judge" (gap under 0.05 nats; the absolute rule held) or "not converged": see
        grains.integration.convergence_status."""
        total = sum(abs(s) for s in self.plus_scores) + sum(abs(s) for s in self.minus_scores)
        return convergence_status(self.delta, self.f_input - self.f_baseline, total,
                                  self.tolerance or DEFAULT_TOLERANCE)

    @property
    def converged(self) -> bool:
        """True only when |delta| <= tolerance x |f(x) - f(baseline)| (never for a gap too small to judge)."""
        return self.convergence == CONVERGED

    @property
    def convergence_reading(self) -> str:
        """One line naming the rule used, e.g. "gap 0.020 nats: too small to judge; delta 0.0004 nats = 1.0% of
        sum|phi|" or "converged: delta 1.2% of the gap (tolerance 5%)"."""
        tolerance = self.tolerance or DEFAULT_TOLERANCE
        gap = self.f_input - self.f_baseline
        if self.convergence == SMALL_GAP_STATUS:
            return (f"gap {gap:+.3f} nats: too small to judge (under {SMALL_GAP:g}); delta {abs(self.delta):.4f} nats "
                    f"= {self.abs_relative_delta:.1%} of sum|phi|")
        return (f"{self.convergence}: delta {self.relative_delta:.1%} of the gap {gap:+.3f} nats "
                f"(tolerance {tolerance:.0%})")

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus the derived `relative_delta`, `abs_relative_delta`, `converged`, `convergence` and
        `convergence_reading`."""
        data = asdict(self)
        data["relative_delta"] = self.relative_delta
        data["abs_relative_delta"] = self.abs_relative_delta
        data["converged"] = self.converged
        data["convergence"] = self.convergence
        data["convergence_reading"] = self.convergence_reading
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributionResult:
        """The result from `to_dict()` (derived keys are recomputed, not read).

        Args:
            data: a dict as `to_dict()` or `to_json()` wrote it.

        Returns:
            The AttributionResult.
        """
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["offsets"] = [tuple(o) for o in values.get("offsets", [])]
        return cls(**values)

    @classmethod
    def from_json(cls, source: str | Path) -> AttributionResult:
        """The result from JSON text or a file written by `to_json` (or `attribute --json`'s "result")."""
        return cls.from_dict(json.loads(read_json_source(source)))

    def to_html(self) -> str:
        """The prompt heatmap, both sequences' heatmaps, and the convergence line (see grains.viz.reports)."""
        from grains.viz.reports import attribution_html

        return attribution_html(self)

    def to_text(self) -> str:
        """The strongest tokens each way and the convergence line, for a terminal."""
        from grains.viz.reports import attribution_text

        return attribution_text(self)


def convergence_summary(results: list[AttributionResult]) -> dict[str, Any]:
    """How many of a build's attributions converged, by the same rule each result reports (`convergence`).

    Args:
        results: the attributions (one per example).

    Returns:
        {"examples", "converged", "gap too small to judge", "not converged", "points", "tolerance",
        "median_relative_delta", "reading"}: counts, the points of the rule used, and one plain sentence.
    """
    counts = {status: sum(r.convergence == status for r in results)
              for status in (CONVERGED, SMALL_GAP_STATUS, "not converged")}
    median = statistics.median(r.relative_delta for r in results) if results else None
    points = sorted({r.points_used for r in results})
    tolerance = (results[0].tolerance if results else None) or DEFAULT_TOLERANCE
    reading = (f"IG converged on {counts[CONVERGED]} of {len(results)} examples "
               f"(|delta| <= {tolerance:.0%} of the gap; {counts[SMALL_GAP_STATUS]} with a gap too small to judge, "
               f"{counts['not converged']} not converged; median |delta| {median:.0%} of the gap) at "
               f"{'/'.join(str(p) for p in points)} points" if results else "no example was attributed")
    return {"examples": len(results), **counts, "points": points, "tolerance": tolerance,
            "median_relative_delta": median, "reading": reading}


def _check_settings(steps: int, target: str, baseline: str, points: str) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"IG steps must be a whole number from 1 to {MAX_STEPS}.")
    if target not in ("sequence", "last"):
        raise InputError("The IG target must be 'sequence' (whole response) or 'last' (last response token).")
    if baseline not in ("zero", "pad"):
        raise InputError("The baseline must be 'zero' or 'pad'.")
    if points not in RULES:
        raise InputError("Integration points must be 'graded', 'gauss-legendre' or 'midpoint'.")


def _check_tolerance(tolerance: float | None, max_points: int | None, steps: int) -> tuple[float | None, int]:
    """The tolerance (None or 0 < t < 1) and the cap on gradient evaluations (default CAP_PER_STEP * steps)."""
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 < tolerance < 1:
            raise InputError("The IG tolerance must be a number between 0 and 1 (e.g. 0.05 for 5%).")
        tolerance = float(tolerance)
    if max_points is None:
        return tolerance, min(MAX_STEPS, CAP_PER_STEP * steps)
    if isinstance(max_points, bool) or not isinstance(max_points, int) or not steps <= max_points <= MAX_STEPS:
        raise InputError(f"The cap on IG points must be a whole number from the steps ({steps}) to {MAX_STEPS}.")
    return tolerance, max_points


def input_embeddings(lm: LoadedModel, example: EncodedExample) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [1, T, D] of s+ and s- as the decoder sees them (images merged in for a VLM)."""
    with torch.no_grad():
        plus = lm.adapter.embed_ids(torch.tensor([example.sequence_ids("plus")]), example.extras)
        minus = lm.adapter.embed_ids(torch.tensor([example.sequence_ids("minus")]), example.extras)
    return plus.detach(), minus.detach()


def baseline_embeddings(lm: LoadedModel, example: EncodedExample, embeds: tuple[torch.Tensor, torch.Tensor],
                        kind: Baseline = "zero") -> tuple[torch.Tensor, torch.Tensor]:
    """The IG baseline: zero (or pad-token) embeddings, with BOS and template specials kept at their real values
    (an all-zero input explodes on RMSNorm models)."""
    out = []
    for which, emb in zip(("plus", "minus"), embeds):
        if kind == "pad":
            pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
            pad_vec = lm.adapter.embed_ids(torch.tensor([[pad_id]]), None)[0, 0].detach()
            base = pad_vec.expand_as(emb).clone()
        else:
            base = torch.zeros_like(emb)
        keep = example.keep_mask(which).to(emb.device)
        base[0, keep] = emb[0, keep]
        out.append(base)
    return out[0], out[1]


def choose_chunk_size(lm: LoadedModel, example: EncodedExample, steps: int) -> int:
    """Interpolation points per batch, sized to free memory."""
    cfg = text_config(lm.model.config)
    hidden = int(cfg.hidden_size)
    width = max(len(example.sequence_ids("plus")), len(example.sequence_ids("minus")))
    per_point = ig_bytes_per_point(
        seq_len=width, kept_positions=width - example.prompt_len + 1, hidden=hidden, layers=lm.num_layers,
        intermediate=int(getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden),
        vocab=int(cfg.vocab_size), dtype_bytes=torch.finfo(lm.dtype).bits // 8,
    )
    return auto_chunk_size(steps, per_point, lm.device)


def can_share_prompt(lm: LoadedModel, example: EncodedExample) -> bool:
    """Whether SharedPromptObjective applies: a text model, no image, logits that are the output layer's product."""
    return not lm.is_vlm and not example.extras and plain_output_layer(lm)


def attribute_example(lm: LoadedModel, example: EncodedExample, steps: int = 20, target: Target = "sequence",
                      baseline: Baseline = "zero", points: IntegrationPoints = DEFAULT_RULE,
                      chunk_size: int | None = None, tolerance: float | None = None,
                      max_points: int | None = None, share_prompt: bool = False) -> AttributionResult:
    """Contrastive IG for an already-encoded example.

    Args:
        lm: a loaded model (grains.load_model).
        example: the encoded prompt, chosen and rejected answers.
        steps: gradient evaluations of the starting rule.
        target: "sequence" (whole response) or "last" (last response token).
        baseline: "zero" or "pad" (BOS and template specials keep their real embeddings).
        points: integration rule: "graded" (log-spaced near a = 0, Gauss-Legendre above), "gauss-legendre", "midpoint".
        chunk_size: points per batch (default: sized to free memory).
        tolerance: if given, refine until within_tolerance(delta, ...) holds or `max_points` is reached.
        max_points: cap on gradient evaluations in tolerance mode (default 8 * steps, at most MAX_STEPS).
        share_prompt: run the prompt once per point for s+ and s- (SharedPromptObjective: the same scores to float
            rounding, a quarter less arithmetic on long prompts but more passes over the weights; off by default,
            slower on two CPU threads: benchmarks/README.md, "Prompt sharing"). Text models only.

    Returns:
        The AttributionResult, with the points used and the delta reached.
    """
    _check_settings(steps, target, baseline, points)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError("The chunk size must be a positive whole number.")
    tolerance, cap = _check_tolerance(tolerance, max_points, steps)
    if share_prompt and not can_share_prompt(lm, example):
        raise InputError("Sharing the prompt between s+ and s- is for text models whose logits are their output "
                         "layer's product.")
    objective = (SharedPromptObjective if share_prompt else ContrastiveObjective)(lm, example, target)
    inputs = input_embeddings(lm, example)
    base = baseline_embeddings(lm, example, inputs, baseline)
    chunk = chunk_size or choose_chunk_size(lm, example, steps)
    start = time.perf_counter()
    with oom_guard("attribution", "use fewer IG steps or a smaller chunk size."):
        integrator = PathIntegrator(objective, inputs, base, chunk)
        outcome = integrate(integrator, make_panels(steps, points), tolerance, cap)
    seconds = time.perf_counter() - start
    phi_plus, phi_minus = _phi((outcome.grad_plus, outcome.grad_minus), integrator.diff)
    f_input, f_base = outcome.f_input, outcome.f_baseline
    delta = float(phi_plus.sum() + phi_minus.sum()) - (f_input - f_base)
    p = example.prompt_len
    prompt_scores = (phi_plus[:p] + phi_minus[:p]).tolist()
    return AttributionResult(
        tokens=list(example.prompt.tokens), scores=prompt_scores, offsets=list(example.prompt.offsets),
        content_mask=list(example.prompt.content_mask), special_mask=list(example.prompt.special_mask),
        image_mask=list(example.prompt.image_mask), prompt_text=example.prompt.text,
        plus_tokens=example.sequence_tokens("plus"), plus_scores=phi_plus.tolist(),
        minus_tokens=example.sequence_tokens("minus"), minus_scores=phi_minus.tolist(), prompt_len=p,
        f_input=f_input, f_baseline=f_base, delta=delta, steps=steps, target=target, baseline=baseline,
        points=points, chunk_size=chunk, seconds=seconds, tolerance=tolerance,
        points_used=sum(panel.n for panel in outcome.panels), gradient_evals=outcome.gradient_evals,
        forward_evals=outcome.forward_evals,
        panel_error=None if outcome.panel_errors is None else float(sum(abs(e) for e in outcome.panel_errors)),
    )


def attribute(lm: LoadedModel, prompt: str, chosen: str, rejected: str, image: Any = None, steps: int = DEFAULT_STEPS,
              target: Target = "sequence", baseline: Baseline = "zero", points: IntegrationPoints = DEFAULT_RULE,
              chunk_size: int | None = None, tolerance: float | None = DEFAULT_TOLERANCE,
              max_points: int | None = None, prompt_format: str | None = None,
              steering: Any = None) -> AttributionResult:
    """Contrastive IG of log P(chosen | prompt) - log P(rejected | prompt) over the input tokens.

    Args:
        lm: a loaded model (grains.load_model).
        prompt: the prompt as the user wrote it.
        chosen: the preferred answer.
        rejected: the dispreferred answer.
        image: a PIL image for a vision-language model.
        steps: gradient evaluations of the starting rule.
        target: "sequence" (whole response) or "last" (last response token).
        baseline: "zero" or "pad".
        points: integration rule ("graded", "gauss-legendre", "midpoint").
        chunk_size: points per batch (default: sized to free memory).
        tolerance: refine until |delta| <= tolerance * |f(x) - f(x')| (for a gap under 0.05 nats, until the
            absolute rule of grains.integration.convergence_status holds); None: the fixed rule of `steps` points
            only (`converged` is then judged at 5%).
        max_points: cap on gradient evaluations when refining (default 8 * steps).
        prompt_format: "raw", "qa" or "chat" for this call (default: the model's).
        steering: a `grains.Steering`: attribute the steered model (the hook is on during every IG point), so its
            heatmap can be set beside the unsteered one.

    Returns:
        The AttributionResult (scores, delta, points used, seconds); `prompt_text` is the exact text the model saw.

    Example:
        >>> lm = grains.load_model("gemma-3-270m")
        >>> result = grains.attribute(lm, "Honestly, the pizza from that new delivery app",
        ...                           " arrived hot and tasted fantastic.", " arrived cold and tasted dreadful.")
        >>> result.converged, result.points_used
        >>> result.show()
    """
    lm = lm.with_format(prompt_format)
    if steering is not None:
        with lm.lock, steering.apply(lm):
            result = attribute(lm, prompt, chosen, rejected, image, steps, target, baseline, points, chunk_size,
                               tolerance, max_points)
        result.extra["steering"] = steering.to_dict()
        return result
    example = encode_example(lm, prompt, chosen, rejected, image=image)
    result = attribute_example(lm, example, steps, target, baseline, points, chunk_size, tolerance, max_points)
    if lm.is_vlm:
        result.image_grid, image_extra = lm.adapter.image_summary(result, example)
        result.extra.update(image_extra)
    return result
