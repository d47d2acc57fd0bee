"""Attribute tab actions: contrastive IG into the session, top-k selection with the session's overrides, the raw
scores as JSON, the patch overlay, and the same example attributed again with one `Steering` on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from components.attribution_cache import ATTRIBUTIONS, is_cached
from components.inputs import chosen_format, open_image, tolerance_value, whole
from components.model_cache import session_model
from components.session import Session
from grains.attribution import DEFAULT_TOLERANCE
from grains.serialize import to_jsonable

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.compare_attributions import AttributionDifference
    from grains.steering import Steering
    from grains.topk import TokenSelection


def run_attribution(session: Session, prompt: str, chosen: str, rejected: str, image_path: str | None,
                    steps: Any, target: str, baseline: str, points: str = "graded",
                    tolerance: Any = DEFAULT_TOLERANCE * 100, prompt_format: Any = None) -> AttributionResult:
    """Contrastive IG on the session's model in `prompt_format` (raw/qa/chat; None: the model's); the result and
    the encoded example go into the session.

    Returns:
        The AttributionResult (also `session.attribution`).
    """
    from grains.attribution import attribute
    from grains.encoding import encode_example

    lm = session_model(session).with_format(chosen_format(prompt_format))
    steps = whole(steps, "IG steps")
    tol = tolerance_value(tolerance)
    image = open_image(image_path, lm)
    inputs = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "image": image_path or None,
              "steps": steps, "target": target, "baseline": baseline, "points": points, "tolerance": tol,
              "prompt_format": lm.prompt_format}
    # computed under the model's lock (get_or_compute): no steering hook of another request is on the model meanwhile
    result = ATTRIBUTIONS.get_or_compute(lm, ATTRIBUTIONS.key(lm, inputs), lambda: attribute(
        lm, prompt, chosen, rejected, image=image, steps=steps, target=target, baseline=baseline, points=points,
        tolerance=tol, prompt_format=lm.prompt_format))
    session.example = encode_example(lm, prompt, chosen, rejected, image=image)
    session.attribution = result
    session.inputs = inputs
    session.clear_overrides()
    return result


@dataclass
class SelectionView:
    """Top-k over the prompt heatmap and per sequence (s+, s-), with notes for the user."""

    prompt: TokenSelection
    plus: TokenSelection
    minus: TokenSelection
    eligible: int
    k: int
    notes: list[str] = field(default_factory=list)


def current_selection(session: Session, k: Any, content_only: bool, skip_punctuation: bool) -> SelectionView:
    """Top-k over the prompt heatmap, and per sequence (s+, s-) as build ablates them, with the session's overrides.

    Returns:
        The SelectionView.
    """
    from grains.ablation import select_for_example
    from grains.topk import select_top_k

    result, example = session.attribution, session.example
    k = whole(k, "k")
    n = len(result.tokens)
    ov = session.overrides
    for key in ov:
        ov[key] = [i for i in ov[key] if 0 <= i < n]
    eligible = example.eligible_mask("plus", bool(content_only), bool(skip_punctuation))[:n]
    prompt_sel = select_top_k(result.scores, k, eligible, force_positive=ov["force_positive"],
                              force_negative=ov["force_negative"], drop=ov["drop"], strict=False)
    overrides = {which: dict(ov) for which in ("plus", "minus")}
    per_seq = select_for_example(example, result, k, bool(content_only), bool(skip_punctuation), strict=False,
                                 overrides=overrides)
    count = sum(eligible)
    notes = []
    if k > count:
        notes.append(f"Only {count} prompt tokens can be selected, fewer than k = {k}: all of them are used.")
    return SelectionView(prompt=prompt_sel, plus=per_seq["plus"], minus=per_seq["minus"], eligible=count, k=k,
                         notes=notes)


def override_texts(session: Session) -> list[str]:
    """The three override lists as the text boxes show them."""
    ov = session.overrides
    return [", ".join(map(str, ov["force_positive"])), ", ".join(map(str, ov["force_negative"])),
            ", ".join(map(str, ov["drop"]))]


def selection_json(session: Session, k: Any = 5, content_only: bool = True, skip_punctuation: bool = False) -> dict:
    """The current selection (prompt, s+, s-) and overrides, as plain data."""
    sel = current_selection(session, k, content_only, skip_punctuation)
    return {"k": sel.k, "prompt": vars(sel.prompt), "plus": vars(sel.plus), "minus": vars(sel.minus),
            "overrides": session.overrides}


def scores_json(session: Session, k: Any = 5, content_only: bool = True, skip_punctuation: bool = False) -> dict:
    """Everything about the last attribution, JSON-safe."""
    data = session.attribution.to_dict()
    data.pop("offsets", None)
    data["converged"] = session.attribution.converged
    data["prompt_format"] = (session.inputs or {}).get("prompt_format")
    data["selection"] = selection_json(session, k, content_only, skip_punctuation)
    return to_jsonable(data)


def overlay_image(result: AttributionResult | None, image_path: str | None, alpha: float) -> Any:
    """The photo with the patch heatmap over it (None without an image grid)."""
    if result is None or result.image_grid is None or not image_path:
        return None
    from grains.images import load_image
    from grains.viz.overlay import patch_overlay

    box = (result.extra or {}).get("crop_box")
    return patch_overlay(load_image(image_path), result.image_grid, alpha=float(alpha), colorbar=True,
                         box=tuple(box) if box else None)


def run_steered_attribution(session: Session, steering: Steering) -> tuple[AttributionResult, AttributionDifference]:
    """The session's last example attributed again with `steering` on, with the same IG settings and prompt format.

    At strength 0 the hook would be the identity, so nothing is recomputed: the steered result is a copy of the
    session's unsteered one (same inputs, same settings, same scores).

    Args:
        session: holds the last attribution and its inputs.
        steering: the checked setting (components.inputs.steering_or_suggestion).

    Returns:
        (steered AttributionResult, AttributionDifference steered − unsteered).
    """
    from grains.attribution import attribute
    from grains.compare_attributions import attribution_difference

    if steering.is_identity:
        steered = replace(session.attribution, extra={**session.attribution.extra, "steering": steering.to_dict()})
        return steered, attribution_difference(session.attribution, steered)
    i = session.inputs
    lm = session_model(session).with_format(i["prompt_format"])
    image = open_image(i.get("image"), lm) if lm.is_vlm else None
    steered = ATTRIBUTIONS.get_or_compute(lm, ATTRIBUTIONS.key(lm, i, steering), lambda: attribute(
        lm, i["prompt"], i["chosen"], i["rejected"], image=image, steps=i["steps"], target=i["target"],
        baseline=i["baseline"], points=i["points"], tolerance=i["tolerance"], steering=steering))
    steered.extra["steering"] = steering.to_dict()
    return steered, attribution_difference(session.attribution, steered)


def steered_json(unsteered: AttributionResult, steered: AttributionResult, diff: AttributionDifference) -> dict:
    """JSON for /attribute_steered: the difference, both results' scores, margins and convergence."""
    def part(result: AttributionResult) -> dict:
        return {"scores": list(result.scores), "f_input": result.f_input, "f_baseline": result.f_baseline,
                "delta": result.delta, "relative_delta": result.relative_delta,
                "abs_relative_delta": result.abs_relative_delta, "converged": result.converged,
                "points_used": result.points_used, "seconds": result.seconds,
                "cached": is_cached(result)}

    return to_jsonable({**diff.to_dict(), "unsteered": part(unsteered), "steered": part(steered),
                       "prompt_text": unsteered.prompt_text})


def dataset_row(name: str, index: Any) -> list[Any]:
    """[prompt, chosen, rejected, image] of row `index` of a shipped dataset."""
    from components.datasets import as_pairs, load_rows

    kind, rows, _ = load_rows(name, None, 1, whole(index, "Row"))
    ex = as_pairs(kind, rows)[0]
    return [ex.prompt, ex.chosen, ex.rejected, ex.image]
