"""Building a steering vector from preference examples: attribute, pick top-k, ablate, aggregate, then choose
a layer and strength by cross-validation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grains import __version__
from grains.ablation import ExampleDeltas, ablation_deltas, caa_deltas, select_for_example
from grains.aggregate import aggregate, direction_stats, layer_norms, resolve_method
from grains.attribution import attribute_example, convergence_summary
from grains.crossval import CrossValidation, cross_validate
from grains.encoding import encode_example
from grains.errors import Cancelled, GrainsError, InputError
from grains.prefix_cache import CachedRows
from grains.scoring import pair_rows, pair_rows_supported, resolve_image, score_pairs
from grains.side_effects import DEFAULT_KL_BUDGET, NeutralKL, SideEffects, kl_meter, measure_side_effects
from grains.steerability import steerability
from grains.steering import Steering, check_layers, check_strength
from grains.topk import check_k
from grains.vectors import SteeringVector
from grains.viz.display import Renderable

if TYPE_CHECKING:
    from grains.models import LoadedModel

DEFAULT_STRENGTHS = (0.1, 0.25, 0.5, 1.0)
BUILD_STEPS = 16  # graded-rule points for top-k selection (see benchmarks/README.md, "points top-k needs")


def default_layers(num_layers: int, count: int = 8) -> list[int]:
    """Evenly spread candidate layers over the middle of the network (20% to 80% of depth)."""
    low, high = max(0, round(0.2 * (num_layers - 1))), round(0.8 * (num_layers - 1))
    if high - low + 1 <= count:
        return list(range(low, high + 1))
    step = (high - low) / (count - 1)
    return sorted({round(low + i * step) for i in range(count)})


@dataclass
class BuildResult(Renderable):
    """A built vector with how its layer and strength were chosen and what the choice costs on neutral text.

    It renders and serialises itself: `_repr_html_()` and `show()` give the vector card (method, layers, the nested
    cross-validated estimate with its interval and test, side effects, warnings); `to_json()` the summary `build
    --json` prints. The vector itself is saved with `result.vector.save(path)` (safetensors + JSON).

    Args:
        vector: the built SteeringVector (suggested layer and strength in it).
        selection: the cross-validation (None when not run): the choice and its nested estimate.
        seconds: wall time of the build.
        skipped: examples left out, with why.
        side_effects: what the chosen setting costs on neutral text (None when not measured).
        timings: where the time went, in seconds per phase ("attribution": IG on every example, "ablation": the
            hidden-state deltas, "budget": the side-effect budget per cell, "cross-validation": rescoring the pairs
            under each cell, "side effects": the chosen cell's cost on neutral text).

    Example:
        >>> built = grains.build_vector(lm, pairs, method="caa")
        >>> built.show()
        >>> built.vector.save("sentiment.safetensors")
    """

    vector: SteeringVector
    selection: CrossValidation | None
    seconds: float
    skipped: list[dict[str, Any]] = field(default_factory=list)
    side_effects: SideEffects | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain JSON-ready values (what `build --json` prints)."""
        v = self.vector
        return {"method": v.method, "n_examples": v.n_examples, "k": v.k, "layer": v.default_layer,
                "strength": v.default_strength, "layers": len(v.layers), "seconds": self.seconds,
                "selection": self.selection.to_dict() if self.selection else None, "skipped": self.skipped,
                "side_effects": self.side_effects.to_dict() if self.side_effects else None,
                "warnings": v.warnings(), "prompt_format": v.meta.get("prompt_format"),
                "note": v.meta.get("note", ""), "timings": dict(self.timings),
                "attribution_convergence": v.meta.get("attribution_convergence")}

    def to_dict(self) -> dict[str, Any]:
        """The summary (what `build --json` prints)."""
        return self.summary()

    def to_html(self) -> str:
        """The vector card as HTML (see grains.viz.reports)."""
        from grains.viz.reports import build_html

        return build_html(self)

    def to_text(self) -> str:
        """The vector card as text."""
        from grains.viz.reports import build_text

        return build_text(self)


class PhaseClock:
    """Wall seconds per named phase, summed over every `with clock("phase"):` block."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def _matches(result: Any, encoded: Any) -> bool:
    """Whether a precomputed attribution covers exactly the encoded example's tokens (s+, s- and the prompt)."""
    return (result is not None and len(result.plus_scores) == len(encoded.sequence_ids("plus"))
            and len(result.minus_scores) == len(encoded.sequence_ids("minus"))
            and result.prompt_len == encoded.prompt_len)


def _example_deltas(lm: LoadedModel, ex: Any, method: str, k: int, steps: int, target: str, baseline: str,
                    position: str, content_only: bool, skip_punctuation: bool, overrides: dict | None,
                    attribution: Any = None, clock: PhaseClock | None = None) -> ExampleDeltas:
    clock = clock or PhaseClock()
    encoded = encode_example(lm, ex.prompt, ex.chosen, ex.rejected, image=resolve_image(getattr(ex, "image", None)))
    if method == "caa":
        with clock("ablation"):
            return caa_deltas(lm, encoded, position)  # type: ignore[arg-type]
    if _matches(attribution, encoded):
        result = attribution  # the caller's attribution of this very example (e.g. the one on screen)
    else:  # top-k selection only: a fixed graded rule, no refinement (see BUILD_STEPS)
        with clock("attribution"):
            result = attribute_example(lm, encoded, steps=steps, target=target,  # type: ignore[arg-type]
                                       baseline=baseline, points="graded", tolerance=None)
    selections = select_for_example(encoded, result, k, content_only, skip_punctuation, strict=False,
                                    overrides=overrides, position=position)  # type: ignore[arg-type]
    with clock("ablation"):
        deltas = ablation_deltas(lm, encoded, selections, baseline, position)  # type: ignore[arg-type]
    deltas.attribution = result
    return deltas


def build_vector(
    lm: LoadedModel,
    examples: Sequence[Any],
    method: str = "grains",
    k: int = 5,
    steps: int = BUILD_STEPS,
    target: str = "sequence",
    baseline: str = "zero",
    position: str = "answer",
    content_only: bool = True,
    skip_punctuation: bool = False,
    select: bool = True,
    folds: int = 3,
    layers: Sequence[int] | None = None,
    strengths: Sequence[float] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    search: str = "coarse",
    normalize: bool = True,
    kl_budget: float | None = DEFAULT_KL_BUDGET,
    neutral_prompts: list[str] | None = None,
    report_side_effects: bool = True,
    prompt_format: str | None = None,
    attributions: Sequence[Any | None] | None = None,
) -> BuildResult:
    """A steering vector for every layer from `examples` (objects with prompt, chosen, rejected, optional image).

    With `select`, layer and strength are chosen by `folds`-fold cross-validation on the mean margin (strength 0
    included), among the cells whose KL on neutral prompts stays within `kl_budget`; the gain of that choice is
    estimated by nested cross-validation and a win is claimed only when a paired test rejects "no gain" (see
    grains.crossval). Otherwise the suggested strength is 0. `search="coarse"` compares the layers at the grid's
    middle strength, then tries every strength at the two best layers; `"grid"` tries every cell.

    Args:
        lm: the loaded model.
        examples: preference examples.
        method: "grains" (mean of ablation deltas), "pca", "mean", or "caa" (the baseline).
        k: top-k tokens per sequence.
        steps: IG points per example.
        target: "sequence" or "last".
        baseline: "zero" or "pad".
        position: read the hidden state at the "answer" (last token) or the "prompt" end (not with caa).
        content_only: top-k only among the user's words, responses and image patches.
        skip_punctuation: also exclude punctuation from top-k.
        select: choose layer and strength by cross-validation.
        folds: cross-validation folds.
        layers: candidate layers (default: spread over the middle of the network).
        strengths: candidate strengths (default 0.1, 0.25, 0.5, 1); positive only (a negative one raises
            InputError: apply the built vector at a negative strength to steer away).
        progress: called with (fraction, message).
        should_stop: polled; True cancels.
        overrides: top-k overrides for a single example.
        seed: fold shuffling seed.
        search: "coarse" or "grid".
        normalize: keep each token's norm when steering (in selection too).
        kl_budget: the largest mean KL on neutral prompts a chosen cell may have, in nats (None: no budget).
        neutral_prompts: prompts for the side-effect measures (default: the shipped set).
        report_side_effects: measure the chosen setting's side effects (KL and repetition) at the end.
        prompt_format: "raw", "qa" or "chat" (default: the model's).
        attributions: optional AttributionResult per example, computed already with the same target, baseline and
            prompt format (e.g. the one the user is looking at): used for top-k instead of running IG again when it
            covers exactly the example's tokens; None entries (or a mismatch) are attributed as usual.

    Returns:
        The BuildResult.

    Example:
        >>> pairs = grains.load_pairs(grains.BUILTIN_DATASETS["hallucination_pairs"], limit=32)
        >>> built = grains.build_vector(lm, pairs, method="grains", k=5)
        >>> built.show()  # the vector card: chosen layer and strength, nested estimate, side effects
    """
    lm = lm.with_format(prompt_format)
    resolve_method(method)  # an unknown name is refused before any work; "mean" is an alias of "grains"
    if search not in ("coarse", "grid"):
        raise InputError("The search must be 'coarse' or 'grid'.")
    if position not in ("answer", "prompt"):
        raise InputError("The read position must be 'answer' or 'prompt'.")
    if position == "prompt" and method == "caa":
        raise InputError("CAA cannot read at the prompt end: chosen and rejected share every state up to there, so "
                         "the vector would be exactly zero. Use position 'answer'.")
    if kl_budget is not None and not (isinstance(kl_budget, int | float) and kl_budget > 0):
        raise InputError("The side-effect budget (KL, nats) must be a positive number.")
    k = check_k(k)
    if not examples:
        raise InputError("There are no examples to build a vector from.")
    candidates = check_layers(list(layers), lm.num_layers) if layers else default_layers(lm.num_layers)
    grid = [check_strength(s) for s in (strengths or DEFAULT_STRENGTHS)]
    if any(s < 0 for s in grid):
        raise InputError(f"Build searches positive strengths only (toward the chosen answers), so "
                         f"{', '.join(f'{s:g}' for s in grid if s < 0)} cannot be searched: to steer away, apply the "
                         "built vector at a negative strength, or swap chosen and rejected.")
    if select and not any(s > 0 for s in grid):
        raise InputError("Give at least one positive strength to choose from (strength 0, unsteered, is always a "
                         "candidate).")
    start = time.perf_counter()
    clock = PhaseClock()
    collect_share = 0.6 if select and len(examples) >= 2 else 1.0
    deltas: list[ExampleDeltas] = []
    kept: list[Any] = []
    skipped: list[dict[str, Any]] = []
    with lm.lock:
        for i, ex in enumerate(examples):
            if should_stop and should_stop():
                raise Cancelled("Vector building was cancelled.")
            try:
                given = attributions[i] if attributions is not None and i < len(attributions) else None
                deltas.append(_example_deltas(lm, ex, method, k, steps, target, baseline, position, content_only,
                                              skip_punctuation, overrides if len(examples) == 1 else None, given,
                                              clock))
                kept.append(ex)
            except (InputError, GrainsError) as exc:
                if len(examples) == 1:
                    raise
                skipped.append({"index": i, "reason": str(exc)})
            if progress:
                progress(collect_share * (i + 1) / len(examples), f"example {i + 1}/{len(examples)}")
        if not deltas:
            raise InputError("No example could be used: " + (skipped[0]["reason"] if skipped else "none given."))
        norms = layer_norms(deltas)

        def make_vector(indices: list[int]) -> SteeringVector:
            subset = [deltas[i] for i in indices]
            return SteeringVector(directions=aggregate(subset, method), layer_norms=layer_norms(subset),
                                  model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers,
                                  method=method, k=None if method == "caa" else k, n_examples=len(subset))

        vector = make_vector(list(range(len(deltas))))
        vector.layer_norms = norms
        stats = direction_stats(deltas, method, vector.directions, norms)
        selection: CrossValidation | None = None
        side_effects: SideEffects | None = None
        meter: NeutralKL | None = None
        if select and len(kept) >= 2:
            score, rows_cache = _margin_scorer(lm, kept, candidates, normalize)

            allowed, excluded = None, []
            if kl_budget is not None:
                meter = kl_meter(lm, neutral_prompts, layers=candidates)
                with clock("budget"):
                    allowed, excluded = _within_budget(lm, vector, candidates, grid, normalize, kl_budget, meter,
                                                       should_stop)
            sub_progress = (lambda f, m: progress(collect_share + (1 - collect_share) * f, m)) if progress else None
            with clock("cross-validation"):
                selection = cross_validate(len(kept), candidates, grid, make_vector, score, folds=folds, seed=seed,
                                           fallback_layer=candidates[len(candidates) // 2], should_stop=should_stop,
                                           progress=sub_progress, search=search, allowed=allowed,
                                           excluded_cells=excluded)
            vector.default_layer, vector.default_strength = selection.layer, selection.strength
            note = selection.note
        else:
            vector.default_layer = candidates[len(candidates) // 2]
            vector.default_strength = 0.5
            note = ("Layer and strength not cross-validated: the defaults are a middle layer and strength 0.5, "
                    "untested.")
        if report_side_effects and vector.default_strength != 0:
            chosen = Steering.create(lm, vector, vector.default_layer, vector.default_strength, normalize)
            with clock("side effects"):
                side_effects = measure_side_effects(lm, chosen, kl=meter or kl_meter(lm, neutral_prompts),
                                                    kl_budget=kl_budget, should_stop=should_stop)
        steer_info = None
        if select and len(kept) >= 2:
            with clock("steerability"):
                probe = Steering.create(lm, vector, vector.default_layer, vector.default_strength, normalize)
                steer_info = steerability(lm, kept, probe, where="the training examples (in-sample)",
                                          cache=rows_cache)
                steer_info.pop("slopes")
    vector.meta = {
        "note": note, "target": target, "baseline": baseline, "position": position, "steps": steps,
        "content_only": content_only, "skip_punctuation": skip_punctuation, "library_version": __version__,
        "candidate_layers": candidates, "candidate_strengths": grid, "search": search, "skipped": len(skipped),
        "normalize": normalize, "kl_budget": kl_budget, "prompt_format": lm.prompt_format,
        "direction_stats": {str(layer): info for layer, info in stats.items()},
        **({"selection": selection.to_dict()} if selection else {}),
        **({"side_effects": side_effects.to_dict()} if side_effects else {}),
        **({"steerability": steer_info} if steer_info else {}),
        "timings": {phase: round(sec, 3) for phase, sec in clock.seconds.items()},
    }
    attributed = [d.attribution for d in deltas if d.attribution is not None]
    if attributed:  # every attribution says whether it converged, the build's too (a fixed rule, for top-k only)
        vector.meta["attribution_convergence"] = convergence_summary(attributed)
    return BuildResult(vector=vector, selection=selection, seconds=time.perf_counter() - start, skipped=skipped,
                       side_effects=side_effects, timings=dict(clock.seconds))


def _margin_scorer(lm: LoadedModel, kept: list[Any], layers: list[int], normalize: bool
                   ) -> tuple[Callable[[SteeringVector | None, int | None, float, list[int]], list[float]],
                              CachedRows | None]:
    """The cross-validation's score callback (each item's margin, unsteered or steered at one cell) and the rows'
    cache it scores from (None with images).

    On a text model the items' rows are encoded once, scored unsteered once, and every steered cell runs only the
    layers above its layer from the kept hidden states (grains.prefix_cache); with images, pair by pair."""
    if not pair_rows_supported(lm, kept):
        def plain(vec: SteeringVector | None, layer: int | None, strength: float, idx: list[int]) -> list[float]:
            steering = None if vec is None or strength == 0 else Steering.create(lm, vec, layer, strength, normalize)
            return [s.margin() for s in score_pairs(lm, [kept[i] for i in idx], steering)]

        return plain, None
    rows = pair_rows(lm, kept)
    cache = CachedRows(lm, rows, layers=layers)

    def cached(vec: SteeringVector | None, layer: int | None, strength: float, idx: list[int]) -> list[float]:
        steering = None if vec is None or strength == 0 else Steering.create(lm, vec, layer, strength, normalize)
        return cache.margins(steering, idx)

    return cached, cache


def _within_budget(lm: LoadedModel, vector: SteeringVector, layers: list[int], strengths: list[float], normalize: bool,
                   budget: float, meter: NeutralKL,
                   should_stop: Callable[[], bool] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Which cells keep the KL on neutral prompts within `budget`, measured with the vector built from every example.

    Per layer, strengths are tried from the smallest up; once one is over budget, the larger ones are excluded
    without being measured (KL grows with strength). Measured on the same prompts as the reported side effects
    (`kl_meter`), so a chosen cell is within budget by the figure its card shows. Returns the
    `allowed(layer, strength)` test and the record of the excluded cells."""
    ok: set[tuple[int, float]] = set()
    excluded: list[dict[str, Any]] = []
    for layer in layers:
        over = False
        for strength in sorted(s for s in strengths if s > 0):
            if over:
                excluded.append({"layer": layer, "strength": strength, "kl": None, "reason": "a smaller strength "
                                 "was already over the budget"})
                continue
            if should_stop and should_stop():
                raise Cancelled("Vector building was cancelled.")
            kl = meter.mean(Steering.create(lm, vector, layer, strength, normalize))
            if kl <= budget:
                ok.add((layer, strength))
            else:
                over = True
                excluded.append({"layer": layer, "strength": strength, "kl": kl, "reason": f"KL over {budget:g}"})
    return (lambda layer, strength: (layer, strength) in ok), excluded

