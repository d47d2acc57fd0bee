"""Probes and how they are scored: one yes/no question per object about one photo, asked unsteered or inside a
steering context, the POPE metrics of a run, the exact McNemar comparison of two runs and the side effects of
steering (yes-ratio shift, answer mass)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grains.errors import InputError
from grains.stats import SIGNIFICANCE_LEVEL
from grains.vlm.check.objects import Vocabulary, load_vocabulary, object_key
from grains.vlm.check.photo import image_digest

if TYPE_CHECKING:
    from grains.models import LoadedModel

QUESTION_TEMPLATE = "Is there a {object} in the image?"  # POPE's wording, as the model sees it
Progress = Callable[[float, str], None] | None


@dataclass(frozen=True)
class Probe:
    """One yes/no question about one photo. `id` = photo digest + object key, so the same question about the same
    photo has the same id wherever it comes from.

    Args:
        object: the object's name as typed.
        truth: "yes" (the object is in the photo) or "no".
        question: the question the model is asked.
        id: photo digest + ":" + object key.
        image: the photo (PIL image or path).
        source: "user" or "shipped".

    Example:
        >>> make_probes(Image.new("RGB", (4, 4)), ["cat"], [])[0].id
        '800f83cd145e727a:cat'
    """

    object: str
    truth: str  # "yes" (the object is in the photo) or "no"
    question: str
    id: str
    image: Any = field(default=None, compare=False, repr=False)  # a PIL image or a file path
    source: str = "user"  # "user" or "shipped"


def check_disjoint(present: Sequence[str], absent: Sequence[str], vocabulary: Vocabulary | None = None) -> None:
    """Refuse an object listed both as present and as absent (or under a synonym).

    Args:
        present: objects in the photo.
        absent: objects not in it.
        vocabulary: for synonyms (default: the shipped one).

    Returns:
        None; an overlap raises InputError naming it.

    Example:
        >>> check_disjoint(["tv"], ["television"])
        Traceback (most recent call last):
        InputError: 'television' and 'tv' name the same object, so it is listed both as present and as absent.
    """
    vocab = vocabulary or load_vocabulary()
    for a in absent:
        for p in present:
            if vocab.names_same_object(a, p):
                same = "is" if object_key(a) == object_key(p) else f"and {p!r} name the same object, so it is"
                raise InputError(f"{a!r} {same} listed both as present and as absent.")


def make_probes(image: Any, present: Sequence[str], absent: Sequence[str], template: str = QUESTION_TEMPLATE,
                digest: str | None = None, vocabulary: Vocabulary | None = None) -> list[Probe]:
    """Probes for the present (truth "yes") and absent (truth "no") objects; the question uses the name as typed.

    Args:
        image: the photo (PIL image).
        present: objects in it.
        absent: objects not in it.
        template: the question, with {object}.
        digest: the photo's digest (computed when not given).
        vocabulary: for synonyms (default: the shipped one).

    Returns:
        The present objects' probes, then the absent ones'. An object listed both ways raises InputError.

    Example:
        >>> [(p.truth, p.question) for p in make_probes(Image.new("RGB", (4, 4)), ["cat"], ["dog"])]
        [('yes', 'Is there a cat in the image?'), ('no', 'Is there a dog in the image?')]
    """
    if "{object}" not in template:
        raise InputError("The question template must contain {object}.")
    check_disjoint(present, absent, vocabulary)
    digest = digest or image_digest(image)
    probes = [Probe(object=o, truth="yes", question=template.format(object=o), id=f"{digest}:{object_key(o)}",
                    image=image) for o in present]
    probes += [Probe(object=o, truth="no", question=template.format(object=o), id=f"{digest}:{object_key(o)}",
                     image=image) for o in absent]
    return probes


# ------------------------------------------------------------------------------------------------ steering


def steering_factory(lm: LoadedModel, steering: Any, layer: Any = None, strength: float | None = None,
                     normalize: bool = True) -> tuple[Callable[[], AbstractContextManager], dict[str, Any]]:
    """The one place this module turns `steering` into hooks on the model, through `grains.Steering`.

    Args:
        lm: the loaded model.
        steering: a `Steering`, or a SteeringVector (layer and strength default to its suggested ones).
        layer: layer(s) for a bare vector.
        strength: strength for a bare vector.
        normalize: keep each token's norm (bare vectors only).

    Returns:
        (a factory of steering contexts, a JSON-safe description of the steering).

    Example:
        >>> context, description = steering_factory(lm, vector, strength=0.2)
        >>> with context():
        ...     lp_yes, lp_no = score_yes_no(lm, image, "Is there a cat in the image?")
    """
    from grains.steering import Steering, as_steering
    from grains.vectors import SteeringVector

    if not isinstance(steering, Steering | SteeringVector):
        raise InputError("Steering must be a steering vector or a grains.Steering setting.")
    chosen = as_steering(lm, steering, layer, strength, normalize)
    vector = chosen.vector
    description = {"kind": "vector", "method": vector.method, "layers": list(chosen.layers),
                   "strength": chosen.strength, "normalize": chosen.normalize, "n_examples": vector.n_examples,
                   "suggested_layer": vector.default_layer, "suggested_strength": vector.default_strength}
    return (lambda: chosen.apply(lm)), description


# ------------------------------------------------------------------------------------------------ scoring


@dataclass
class ProbeAnswer:
    """The model's answer to one probe. `p_yes` = P(yes) / (P(yes) + P(no)) at the answer start; `answer_mass` =
    P(yes) + P(no) (how much the model answers yes/no at all).

    Args:
        probe: the probe.
        answer: "yes" or "no" (whichever is more probable).
        p_yes: P(yes) / (P(yes) + P(no)).
        logp_yes: log P(yes) at the answer start.
        logp_no: log P(no).

    Example:
        >>> run = run_probes(lm, probes)
        >>> [a.hallucination for a in run.answers]
    """

    probe: Probe
    answer: str
    p_yes: float
    logp_yes: float
    logp_no: float

    @property
    def correct(self) -> bool:
        return self.answer == self.probe.truth

    @property
    def hallucination(self) -> bool:
        """A "yes" about an object that is not in the photo (POPE's hallucination)."""
        return self.probe.truth == "no" and self.answer == "yes"

    @property
    def answer_mass(self) -> float:
        return math.exp(self.logp_yes) + math.exp(self.logp_no)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.probe.id, "object": self.probe.object, "question": self.probe.question,
                "truth": self.probe.truth, "answer": self.answer, "p_yes": self.p_yes, "logp_yes": self.logp_yes,
                "logp_no": self.logp_no, "correct": self.correct, "hallucination": self.hallucination,
                "answer_mass": self.answer_mass}


@dataclass
class CheckRun:
    """Every probe's answer under one condition (unsteered or steered) and the POPE metrics.

    Args:
        answers: one ProbeAnswer per probe.
        metrics: accuracy, precision, recall, F1, yes ratio, hallucinations (grains.vlm.pope.probe_metrics).

    Example:
        >>> run = run_probes(lm, probes)
        >>> run.metrics["accuracy"], run.hallucinations
    """

    answers: list[ProbeAnswer]
    metrics: dict[str, Any]

    @property
    def hallucinations(self) -> int:
        return sum(a.hallucination for a in self.answers)


def _p_yes(lp_yes: float, lp_no: float) -> float:
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, lp_no - lp_yes))))


def run_probes(lm: LoadedModel, probes: Sequence[Probe], context: Callable[[], AbstractContextManager] | None = None,
               progress: Progress = None, label: str = "") -> CheckRun:
    """Ask every probe (inside `context()` when given) and compute the POPE metrics ("yes" is positive).

    Args:
        lm: the loaded vision-language model.
        probes: the probes.
        context: a factory of steering contexts (steering_factory), or None for unsteered.
        progress: callback(fraction, message).
        label: prefix of the progress messages.

    Returns:
        The CheckRun.

    Example:
        >>> run = run_probes(lm, make_probes(pil, ["cup"], ["dog"]))
        >>> run.metrics["n"]
        2
    """
    from grains.vlm.pope import probe_metrics, score_yes_no

    answers = []
    with lm.lock:
        for i, probe in enumerate(probes):
            with (context() if context is not None else nullcontext()):
                lp_yes, lp_no = score_yes_no(lm, probe.image, probe.question)
            answers.append(ProbeAnswer(probe=probe, answer="yes" if lp_yes > lp_no else "no",
                                       p_yes=_p_yes(lp_yes, lp_no), logp_yes=lp_yes, logp_no=lp_no))
            if progress:
                progress((i + 1) / len(probes), f"{label}{i + 1}/{len(probes)}")
    metrics = probe_metrics([a.answer for a in answers], [a.probe.truth for a in answers])
    metrics["hallucinations"] = sum(a.hallucination for a in answers)
    metrics["absent"] = sum(a.probe.truth == "no" for a in answers)
    metrics["hallucination_rate"] = metrics["hallucinations"] / metrics["absent"] if metrics["absent"] else None
    return CheckRun(answers=answers, metrics=metrics)


def min_discordant_to_reject(alpha: float = SIGNIFICANCE_LEVEL) -> int:
    """The fewest probes that must change answer before the two-sided exact McNemar test can give p < alpha: with d
    discordant probes the smallest possible p is 2 * 0.5**d.

    Args:
        alpha: the significance level.

    Returns:
        The smallest such d.

    Example:
        >>> min_discordant_to_reject(), min_discordant_to_reject(0.01)
        (6, 8)
    """
    d = 1
    while 2 * 0.5 ** d >= alpha:
        d += 1
    return d


def compare_runs(unsteered: CheckRun, steered: CheckRun) -> dict[str, Any]:
    """Exact McNemar test and the interval that inverts it (the two always agree), with a plain reading that says
    when n is too small for the test to reject.

    Args:
        unsteered: the unsteered run.
        steered: the steered run over the same probes.

    Returns:
        n, the discordant counts, p-value, accuracy gain and its interval, the reading, whether the test can reject
        at all (`can_reject`, `power_note`) and whether it did (`significant`).

    Example:
        >>> comparison = compare_runs(run_probes(lm, probes), run_probes(lm, probes, context))
        >>> comparison["p_value"], comparison["power_note"]
    """
    from grains.stats import significance_summary

    u = [a.correct for a in unsteered.answers]
    s = [a.correct for a in steered.answers]
    stats = significance_summary(u, s, "mcnemar")
    b, c = stats["only_unsteered_correct"], stats["only_steered_correct"]
    need = min_discordant_to_reject()
    n = len(u)
    changed = sum(x.answer != y.answer for x, y in zip(unsteered.answers, steered.answers))
    if n < need:
        power = (f"With {n} probes the exact McNemar test can never reject at p < {SIGNIFICANCE_LEVEL:g}, whatever "
                 f"the model does: it needs at least {need} probes that change from right to wrong or back.")
    elif b + c < need:
        power = (f"Only {b + c} probes changed between right and wrong; with fewer than {need} discordant probes "
                 f"the exact McNemar test can never give p < {SIGNIFICANCE_LEVEL:g}, so this check cannot show an "
                 "effect either way.")
    else:
        power = ""
    return {"n": n, "only_unsteered_correct": b, "only_steered_correct": c, "discordant": b + c,
            "answers_changed": changed, "p_value": stats["p_value"], "gain": stats["gain"],
            "gain_ci": stats["gain_ci"], "reading": stats["reading"], "can_reject": n >= need and b + c >= need,
            "min_discordant": need, "power_note": power,
            "significant": stats["p_value"] < SIGNIFICANCE_LEVEL}


def side_effects_of(unsteered: CheckRun, steered: CheckRun) -> dict[str, Any]:
    """What steering did besides accuracy: the yes-ratio shift and how much the model still answers yes/no.

    Args:
        unsteered: the unsteered run.
        steered: the steered run over the same probes.

    Returns:
        {"yes_ratio_change", "answer_mass_unsteered", "answer_mass", "notes"}.

    Example:
        >>> side_effects_of(unsteered, steered)["yes_ratio_change"]
    """
    mass_u = sum(a.answer_mass for a in unsteered.answers) / len(unsteered.answers)
    mass_s = sum(a.answer_mass for a in steered.answers) / len(steered.answers)
    shift = steered.metrics["yes_ratio"] - unsteered.metrics["yes_ratio"]
    notes = []
    if abs(shift) >= 0.25:
        notes.append(f"Steering moved the yes ratio by {shift:+.0%}: part of any accuracy change may be a shifted "
                     "answer bias rather than better answers.")
    if mass_u > 0 and mass_s < 0.5 * mass_u:
        notes.append(f"Steered, the model puts {mass_s:.1%} of its probability on 'Yes' or 'No' (unsteered "
                     f"{mass_u:.1%}): it has mostly stopped answering yes/no.")
    return {"yes_ratio_change": shift, "answer_mass_unsteered": mass_u, "answer_mass": mass_s, "notes": notes}
