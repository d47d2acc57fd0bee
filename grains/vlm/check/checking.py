"""The entry point `check_image`: resolve the object lists (proposing absent ones), make the probes, run them
unsteered and, with steering, steered, and report side by side with the exact McNemar test."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grains.errors import InputError
from grains.vlm.check.objects import SETTINGS, Proposal, Vocabulary, load_vocabulary, parse_objects, propose_absent
from grains.vlm.check.photo import open_photo
from grains.vlm.check.probes import (
    QUESTION_TEMPLATE,
    Progress,
    check_disjoint,
    compare_runs,
    make_probes,
    run_probes,
    side_effects_of,
    steering_factory,
)
from grains.vlm.check.report import CheckReport

if TYPE_CHECKING:
    from grains.models import LoadedModel


def resolve_objects(present: str | Sequence[str] | None, absent: str | Sequence[str] | None = None,
                    setting: str | None = None, n_absent: int | None = None, seed: int = 0,
                    vocabulary: Vocabulary | None = None) -> tuple[list[str], list[str], Proposal | None]:
    """Checked present and absent lists; absent ones proposed in `setting` when not given.

    Args:
        present, absent: lists or comma-separated strings.
        setting: random, popular or adversarial; used only when `absent` is empty (default random).
        n_absent: how many to propose (default: as many as present).

    Returns:
        (present, absent, the Proposal or None when the user listed the absent objects).

    Example:
        >>> present, absent, proposal = resolve_objects("dog", setting="popular", n_absent=3)
        >>> absent
        ['person', 'car', 'chair']
    """
    vocab = vocabulary or load_vocabulary()
    present_list = parse_objects(present, "present")
    absent_list = parse_objects(absent, "absent")
    if absent_list and setting:
        raise InputError("List absent objects or choose a setting to propose them, not both.")
    if setting and setting not in SETTINGS:
        raise InputError(f"Unknown setting {setting!r}: use random, popular or adversarial.")
    proposal = None
    if not absent_list:
        if not present_list:
            raise InputError("List at least one object that is in the photo (and, optionally, some that are not).")
        proposal = propose_absent(present_list, setting or "random", n_absent, seed, vocab)
        absent_list = proposal.objects
    if len(present_list) + len(absent_list) == 0:
        raise InputError("List at least one object to ask about.")
    check_disjoint(present_list, absent_list, vocab)
    return present_list, absent_list, proposal


def check_image(lm: LoadedModel, image: Any, present: str | Sequence[str] | None = None,
                absent: str | Sequence[str] | None = None, setting: str | None = None, steering: Any = None,
                layer: Any = None, strength: float | None = None, normalize: bool = True,
                n_absent: int | None = None, seed: int = 0, template: str = QUESTION_TEMPLATE,
                only: Sequence[str] | None = None, progress: Progress = None) -> CheckReport:
    """Ask a VLM about objects in (present) and not in (absent) one photo; report POPE metrics, and with `steering`
    the same probes steered, side by side with the exact McNemar test.

    Args:
        lm: a loaded vision-language model (grains.load_model).
        image: a file path, bytes or PIL image.
        present: objects in the photo (truth "yes"), a list or "a, b".
        absent: objects not in the photo (truth "no"); or leave empty and give `setting`.
        setting: "random", "popular" or "adversarial": propose absent objects from the shipped vocabulary.
        steering: None, a SteeringVector (layer/strength default to its suggestion) or a steering setting with
            `.apply(lm)`.
        layer, strength, normalize: steering settings for a vector.
        n_absent: how many absent objects to propose (default: as many as present).
        seed: for the random setting.
        template: the question; must contain {object}.
        only: probe ids to keep (used by `steer_and_recheck` to check only held-out probes).
        progress: callback(fraction, message).

    Returns:
        A CheckReport.

    Example:
        >>> report = grains.check_image(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial")
        >>> print(report.reading())
    """
    start = time.perf_counter()
    pil, info = open_photo(lm, image)
    vocab = load_vocabulary()
    present_list, absent_list, proposal = resolve_objects(present, absent, setting, n_absent, seed, vocab)
    probes = make_probes(pil, present_list, absent_list, template, info["digest"], vocab)
    if only is not None:
        keep = set(only)
        probes = [p for p in probes if p.id in keep]
        if not probes:
            raise InputError("None of the probes to keep are in this check.")
    context, description = (None, None) if steering is None else steering_factory(lm, steering, layer, strength,
                                                                                  normalize)
    share = 0.5 if context is not None else 1.0
    sub = (lambda f, m: progress(share * f, m)) if progress else None
    unsteered = run_probes(lm, probes, None, sub, "unsteered ")
    report = CheckReport(model_id=lm.model_id, random_weights=bool(getattr(lm, "random_weights", False)), image=info,
                         template=template, unsteered=unsteered, proposal=proposal)
    if context is not None:
        sub = (lambda f, m: progress(0.5 + 0.5 * f, m)) if progress else None
        report.steered = run_probes(lm, probes, context, sub, "steered ")
        report.comparison = compare_runs(unsteered, report.steered)
        report.steering = description
        report.side_effects = side_effects_of(unsteered, report.steered)
        if description and description.get("strength") == 0:
            report.notes.append("The steering strength is 0: steered and unsteered are the same model.")
    if report.random_weights:
        report.notes.append("Random weights: this tiny test model's answers are meaningless.")
    report.seconds = time.perf_counter() - start
    return report
