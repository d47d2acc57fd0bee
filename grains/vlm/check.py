"""Check one photo for object hallucinations, POPE style: ask "Is there a {object} in the image?" about objects that
are in it and objects that are not, and report what the field reports (per probe the answer, P(yes) and whether it is
a hallucination; accuracy, precision, recall, F1 and the yes ratio), unsteered and steered side by side with the exact
McNemar test; show where the model looked for one probe; build a vector and re-check on probes it never saw.

    import grains
    lm = grains.load_model("HuggingFaceTB/SmolVLM-256M-Instruct")
    report = grains.check_image(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial")
    report.show()                                   # or report.to_json(), or display it in a notebook
    look = where_the_model_looked(lm, "photo.jpg", report.unsteered.answers[2].probe)
    rechecked = steer_and_recheck(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial", source="shipped")

Absent objects are proposed from a shipped vocabulary (the 80 COCO class names) in POPE's three settings: random,
popular (the most frequent objects) and adversarial (objects that often appear with the present ones). The popularity
order and the co-occurrence table in `assets/data/object_vocabulary.json` were written for this project, not measured
on COCO. A proposal never contains an object listed as present (compared without case, plural or listed synonyms).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from grains.errors import InputError
from grains.stats import SIGNIFICANCE_LEVEL

Setting = Literal["random", "popular", "adversarial"]
SETTINGS: tuple[str, ...] = ("random", "popular", "adversarial")
QUESTION_TEMPLATE = "Is there a {object} in the image?"  # POPE's wording, as the model sees it
MAX_OBJECTS = 50  # per list: each object is one model call per condition
MAX_OBJECT_CHARS = 60
VOCABULARY_PATH = Path(__file__).resolve().parents[2] / "assets" / "data" / "object_vocabulary.json"
SHIPPED_PROBES = "pope_style"
Progress = Callable[[float, str], None] | None

# ------------------------------------------------------------------------------------------------ object names

_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
              "knives": "knife", "leaves": "leaf", "shelves": "shelf", "wolves": "wolf", "loaves": "loaf",
              "teeth": "tooth", "feet": "foot", "geese": "goose", "buses": "bus", "tomatoes": "tomato",
              "potatoes": "potato", "cacti": "cactus", "oxen": "ox", "dice": "die", "sheep": "sheep",
              "fish": "fish", "deer": "deer", "skis": "ski", "scissors": "scissors", "glasses": "glass"}
_ARTICLES = ("a ", "an ", "the ", "some ")


def _singular(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def object_key(name: str) -> str:
    """The comparison form of an object name: lower case, single spaces, no article, last word singular.

    Args:
        name: an object as a user typed it ("Dogs", "a wine glass", "teddy-bears").

    Returns:
        e.g. "dog", "wine glass", "teddy bear".
    """
    text = re.sub(r"[\s_\-]+", " ", str(name).strip().lower()).strip(" .,;:!?\"'")
    for article in _ARTICLES:
        if text.startswith(article):
            text = text[len(article):]
    words = text.split()
    if not words:
        return ""
    words[-1] = _singular(words[-1])
    return " ".join(words)


@dataclass(frozen=True)
class Vocabulary:
    """Object names for proposing absent objects, with a popularity order, a co-occurrence table and synonyms."""

    objects: tuple[str, ...]
    popularity: tuple[str, ...]
    cooccurrence: dict[str, dict[str, int]]
    synonyms: dict[str, str]  # object_key(synonym or name) -> vocabulary name
    notice: str = ""

    def canonical(self, name: str) -> str | None:
        """The vocabulary name `name` refers to (through case, plural and listed synonyms), or None."""
        return self.synonyms.get(object_key(name))

    def names_same_object(self, a: str, b: str) -> bool:
        """True when two names refer to the same object: equal keys, the same vocabulary entry, or one is the head
        noun of the other ("car" and "red car"). Generous on purpose: it decides what may never be proposed."""
        ka, kb = object_key(a), object_key(b)
        if not ka or not kb:
            return False
        if ka == kb or ka.endswith(" " + kb) or kb.endswith(" " + ka):
            return True
        ca, cb = self.canonical(a), self.canonical(b)
        return ca is not None and ca == cb


@lru_cache(maxsize=4)
def load_vocabulary(path: str | None = None) -> Vocabulary:
    """The shipped object vocabulary (80 COCO class names; popularity and co-occurrence written for this project).

    Args:
        path: another file of the same JSON shape (objects, popularity, scenes, synonyms); default the shipped one.

    Returns:
        A Vocabulary. co-occurrence(a, b) is the number of the file's scenes that list both a and b.
    """
    source = Path(path) if path else VOCABULARY_PATH
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"The object vocabulary {source} could not be read: {exc}") from exc
    objects = tuple(data["objects"])
    known = set(objects)
    popularity = tuple(o for o in data.get("popularity", objects) if o in known)
    popularity += tuple(o for o in objects if o not in popularity)
    cooc: dict[str, dict[str, int]] = {o: {} for o in objects}
    for members in data.get("scenes", {}).values():
        unique = sorted(set(m for m in members if m in known))
        for a in unique:
            for b in unique:
                if a != b:
                    cooc[a][b] = cooc[a].get(b, 0) + 1
    synonyms = {object_key(o): o for o in objects}
    for name, others in data.get("synonyms", {}).items():
        if name in known:
            for other in others:
                synonyms.setdefault(object_key(other), name)
    return Vocabulary(objects=objects, popularity=popularity, cooccurrence=cooc, synonyms=synonyms,
                      notice=str(data.get("notice", "")))


def parse_objects(value: str | Sequence[str] | None, what: str) -> list[str]:
    """A checked list of object names from a comma-separated string or a list; duplicates (same key) dropped.

    Args:
        value: "cat, sofa" or ["cat", "sofa"] or None.
        what: "present" or "absent", for messages.

    Returns:
        The names, stripped, in order.
    """
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    if len(items) > MAX_OBJECTS:
        raise InputError(f"{len(items)} {what} objects were listed; the limit is {MAX_OBJECTS} per list (each one "
                         "is a question to the model).")
    out: list[str] = []
    keys: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"Each {what} object must be text, not {type(item).__name__}.")
        name = " ".join(item.split())
        if not name:
            continue
        if len(name) > MAX_OBJECT_CHARS:
            raise InputError(f"The {what} object {name[:30]!r}... is {len(name)} characters long; the limit is "
                             f"{MAX_OBJECT_CHARS}.")
        if any(not ch.isprintable() for ch in name):
            raise InputError(f"The {what} object {name!r} contains control characters.")
        if not object_key(name):
            raise InputError(f"The {what} object {name!r} has no letters to ask about.")
        if object_key(name) in keys:
            continue
        keys.add(object_key(name))
        out.append(name)
    return out


# ------------------------------------------------------------------------------------------------ proposal


@dataclass
class Proposal:
    """Absent objects proposed in one POPE setting, and how they were chosen."""

    setting: str
    objects: list[str]
    scores: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def propose_absent(present: Sequence[str], setting: str = "adversarial", n: int | None = None, seed: int = 0,
                   vocabulary: Vocabulary | None = None, exclude: Sequence[str] = ()) -> Proposal:
    """Absent objects to ask about, from the vocabulary, in one of POPE's settings; never one listed as present.

    Args:
        present: the objects that are in the photo (any case, singular or plural, listed synonyms).
        setting: "random" (uniform, seeded), "popular" (most frequent first) or "adversarial" (most often seen
            with the present objects first; ties and objects that never co-occur by popularity).
        n: how many (default: as many as present objects, so yes and no are balanced as in POPE; at least 1).
        seed: for the random setting.
        vocabulary: default the shipped one.
        exclude: more names never to propose (e.g. absent objects the user already listed).

    Returns:
        A Proposal with the objects, the score that ranked each, and notes (e.g. when too few objects co-occur).
    """
    if setting not in SETTINGS:
        raise InputError(f"Unknown setting {setting!r}: use random, popular or adversarial.")
    vocab = vocabulary or load_vocabulary()
    present = [p for p in present if object_key(p)]
    if n is None:
        n = max(1, len(present))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_OBJECTS:
        raise InputError(f"The number of absent objects to propose must be a whole number from 1 to {MAX_OBJECTS}.")
    blocked = list(present) + list(exclude)
    candidates = [o for o in vocab.objects if not any(vocab.names_same_object(o, b) for b in blocked)]
    notes: list[str] = []
    if len(candidates) < n:
        notes.append(f"Only {len(candidates)} vocabulary objects are not listed as present: proposing all of them.")
        n = len(candidates)
    rank = {o: i for i, o in enumerate(vocab.popularity)}
    scores: dict[str, float]
    if setting == "random":
        picked = random.Random(seed).sample(candidates, n)
        scores = {o: 1.0 / len(candidates) for o in picked}
    elif setting == "popular":
        picked = sorted(candidates, key=lambda o: rank[o])[:n]
        scores = {o: float(len(vocab.popularity) - rank[o]) for o in picked}
    else:
        anchors = sorted({c for p in present if (c := vocab.canonical(p)) is not None})
        unknown = [p for p in present if vocab.canonical(p) is None]
        if unknown:
            notes.append(f"Not in the vocabulary, so no co-occurrence is known for: {', '.join(unknown)}.")
        together = {o: float(sum(vocab.cooccurrence.get(a, {}).get(o, 0) for a in anchors)) for o in candidates}
        picked = sorted(candidates, key=lambda o: (-together[o], rank[o]))[:n]
        scores = {o: together[o] for o in picked}
        co = sum(1 for o in picked if together[o] > 0)
        if co < len(picked):
            notes.append(f"{co} of {len(picked)} proposed objects co-occur with the present ones in the table; the "
                         "rest are the most popular objects.")
    notes.append("Popularity and co-occurrence were written for this project, not measured on COCO.")
    return Proposal(setting=setting, objects=list(picked), scores=scores, notes=notes)


# ------------------------------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class Probe:
    """One yes/no question about one photo. `id` = photo digest + object key, so the same question about the same
    photo has the same id wherever it comes from."""

    object: str
    truth: str  # "yes" (the object is in the photo) or "no"
    question: str
    id: str
    image: Any = field(default=None, compare=False, repr=False)  # a PIL image or a file path
    source: str = "user"  # "user" or "shipped"


def image_digest(image: Any) -> str:
    """A short content hash of a decoded image (size and RGB pixels), so one photo has one id however it came."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()[:16]


def check_disjoint(present: Sequence[str], absent: Sequence[str], vocabulary: Vocabulary | None = None) -> None:
    """Raise InputError when an object is listed both as present and as absent (or under a synonym)."""
    vocab = vocabulary or load_vocabulary()
    for a in absent:
        for p in present:
            if vocab.names_same_object(a, p):
                same = "is" if object_key(a) == object_key(p) else f"and {p!r} name the same object, so it is"
                raise InputError(f"{a!r} {same} listed both as present and as absent.")


def make_probes(image: Any, present: Sequence[str], absent: Sequence[str], template: str = QUESTION_TEMPLATE,
                digest: str | None = None, vocabulary: Vocabulary | None = None) -> list[Probe]:
    """Probes for the present (truth "yes") and absent (truth "no") objects; the question uses the name as typed.

    Raises InputError when an object is listed both as present and as absent (or a synonym of it)."""
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


def steering_factory(lm: Any, steering: Any, layer: Any = None, strength: float | None = None,
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
    P(yes) + P(no) (how much the model answers yes/no at all)."""

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
    """Every probe's answer under one condition (unsteered or steered) and the POPE metrics."""

    answers: list[ProbeAnswer]
    metrics: dict[str, Any]

    @property
    def hallucinations(self) -> int:
        return sum(a.hallucination for a in self.answers)


def _p_yes(lp_yes: float, lp_no: float) -> float:
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, lp_no - lp_yes))))


def run_probes(lm: Any, probes: Sequence[Probe], context: Callable[[], AbstractContextManager] | None = None,
               progress: Progress = None, label: str = "") -> CheckRun:
    """Ask every probe (inside `context()` when given) and compute the POPE metrics ("yes" is positive)."""
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
    discordant probes the smallest possible p is 2 * 0.5**d (6 at alpha = 0.05)."""
    d = 1
    while 2 * 0.5 ** d >= alpha:
        d += 1
    return d


def compare_runs(unsteered: CheckRun, steered: CheckRun) -> dict[str, Any]:
    """Exact McNemar test and the interval that inverts it (the two always agree), with a plain reading that says
    when n is too small for the test to reject."""
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


def _side_effects(unsteered: CheckRun, steered: CheckRun) -> dict[str, Any]:
    """What steering did besides accuracy: the yes-ratio shift and how much the model still answers yes/no."""
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


# ------------------------------------------------------------------------------------------------ the report


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.0%}"


METRIC_ROWS = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
               ("yes ratio", "yes_ratio"), ("hallucinations (false yes)", "hallucinations"))


@dataclass
class CheckReport:
    """A hallucination check of one photo: per-probe answers and POPE metrics, unsteered and (optionally) steered,
    the McNemar comparison, and for a re-check the build/check split. Renders itself: `to_dict()`, `to_json()`,
    `_repr_html_()` (notebooks), `show()` (console)."""

    model_id: str
    random_weights: bool
    image: dict[str, Any]
    template: str
    unsteered: CheckRun
    steered: CheckRun | None = None
    comparison: dict[str, Any] | None = None
    steering: dict[str, Any] | None = None
    side_effects: dict[str, Any] | None = None
    proposal: Proposal | None = None
    split: dict[str, Any] | None = None
    build: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    vector: Any = field(default=None, repr=False)  # the SteeringVector a re-check built (not in to_dict)

    @property
    def probes(self) -> list[Probe]:
        return [a.probe for a in self.unsteered.answers]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe (NaN/inf become None)."""
        rows = []
        for i, a in enumerate(self.unsteered.answers):
            row = a.to_dict()
            if self.steered is not None:
                s = self.steered.answers[i]
                row.update({"answer_steered": s.answer, "p_yes_steered": s.p_yes, "correct_steered": s.correct,
                            "hallucination_steered": s.hallucination})
            rows.append(row)
        data = {
            "model": self.model_id, "random_weights": self.random_weights, "image": self.image,
            "question_template": self.template, "n": len(rows),
            "setting": self.proposal.setting if self.proposal else None,
            "proposal": self.proposal.to_dict() if self.proposal else None,
            "unsteered": self.unsteered.metrics, "steered": self.steered.metrics if self.steered else None,
            "mcnemar": self.comparison, "steering": self.steering, "side_effects": self.side_effects,
            "split": self.split, "build": self.build, "probes": rows, "notes": self.notes, "seconds": self.seconds,
        }
        return _json_safe(data)

    def to_json(self, indent: int | None = None) -> str:
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def reading(self) -> str:
        """One or two plain sentences: what the check found."""
        m = self.unsteered.metrics
        absent = m["absent"]
        text = (f"The model said yes to {m['hallucinations']} of {absent} absent objects" if absent
                else "No absent objects were asked about")
        text += f" and to {m['tp']} of {m['tp'] + m['fn']} present ones (accuracy {m['accuracy']:.0%}, n = {m['n']})."
        if self.steered is not None and self.comparison is not None:
            s = self.steered.metrics
            text += (f" Steered: {s['hallucinations']} of {s['absent']} absent, accuracy {s['accuracy']:.0%}; "
                     f"{self.comparison['reading']}.")
            if self.comparison["power_note"]:
                text += " " + self.comparison["power_note"]
        return text

    # -------------------------------------------------------------- rendering

    def _metric_rows(self) -> list[tuple[str, str, str]]:
        out = []
        for label, key in METRIC_ROWS:
            fmt = (lambda v: str(v)) if key == "hallucinations" else _pct
            before = fmt(self.unsteered.metrics.get(key))
            after = fmt(self.steered.metrics.get(key)) if self.steered else "—"
            out.append((label, before, after))
        return out

    def _probe_rows(self) -> list[list[str]]:
        rows = []
        for i, a in enumerate(self.unsteered.answers):
            row = [a.probe.object, a.probe.truth, a.answer, f"{a.p_yes:.3f}", "HALLUCINATION" if a.hallucination
                   else ("miss" if not a.correct else "")]
            if self.steered is not None:
                s = self.steered.answers[i]
                row += [s.answer, f"{s.p_yes:.3f}", "HALLUCINATION" if s.hallucination
                        else ("miss" if not s.correct else "")]
            rows.append(row)
        return rows

    def _headers(self) -> list[str]:
        head = ["object", "truth", "answer", "P(yes)", "flag"]
        return head + ["steered answer", "steered P(yes)", "steered flag"] if self.steered else head

    def _repr_html_(self) -> str:
        e = html.escape
        title = (f"<b>Hallucination check</b> · {e(self.model_id)} · {e(str(self.image.get('name', 'image')))} · "
                 f"n = {len(self.unsteered.answers)}")
        warn = ("<div style='color:#7a4a00'><b>Random weights:</b> a tiny test model; its answers are meaningless."
                "</div>" if self.random_weights else "")
        metrics = "".join(f"<tr><th style='text-align:left'>{e(a)}</th><td>{e(b)}</td><td>{e(c)}</td></tr>"
                          for a, b, c in self._metric_rows())
        metrics = (f"<table><tr><th></th><th>unsteered</th><th>steered</th></tr>{metrics}</table>")
        head = "".join(f"<th>{e(h)}</th>" for h in self._headers())
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in self._probe_rows())
        probes = f"<table><tr>{head}</tr>{body}</table>"
        notes = "".join(f"<li>{e(n)}</li>" for n in self._all_notes())
        return (f"<div class='grains-check'>{title}{warn}<p>{e(self.reading())}</p>{metrics}{probes}"
                f"{'<ul>' + notes + '</ul>' if notes else ''}</div>")

    def _all_notes(self) -> list[str]:
        notes = list(self.notes)
        if self.proposal:
            notes += [f"Absent objects proposed in the {self.proposal.setting} setting. " + " ".join(
                self.proposal.notes)]
        if self.side_effects:
            notes += self.side_effects["notes"]
        if self.split:
            notes.append(self.split["note"])
        return notes

    def __str__(self) -> str:
        lines = [f"Hallucination check: {self.model_id}, {self.image.get('name', 'image')}, "
                 f"n = {len(self.unsteered.answers)}"]
        if self.random_weights:
            lines.append("RANDOM WEIGHTS: a tiny test model; its answers are meaningless.")
        lines.append(self.reading())
        lines.append(f"{'':28s}{'unsteered':>12s}{'steered':>12s}")
        lines += [f"{a:28s}{b:>12s}{c:>12s}" for a, b, c in self._metric_rows()]
        headers = self._headers()
        rows = self._probe_rows()
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines += [f"- {n}" for n in self._all_notes()]
        return "\n".join(lines)

    def show(self, file: Any = None) -> None:
        """Print the report as a text table (to stdout unless `file` is given)."""
        print(str(self), file=file or sys.stdout)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------ entry points


def _open(lm: Any, image: Any) -> tuple[Any, dict[str, Any]]:
    """The photo as a checked RGB image, and what the report says about it; refuses a text-only model."""
    from grains.images import load_image

    if not getattr(lm, "is_vlm", False):
        raise InputError(f"{lm.model_id} is a text-only model: a hallucination check needs a vision-language model "
                         "(e.g. tiny-random-llava, or llava-hf/llava-v1.6-mistral-7b-hf).")
    if image is None:
        raise InputError("Give a photo to check.")
    pil = load_image(image)
    name = Path(image).name if isinstance(image, str | Path) else "image"
    return pil, {"name": name, "width": pil.width, "height": pil.height, "digest": image_digest(pil)}


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


def check_image(lm: Any, image: Any, present: str | Sequence[str] | None = None,
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
    """
    start = time.perf_counter()
    pil, info = _open(lm, image)
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
        report.side_effects = _side_effects(unsteered, report.steered)
        if description and description.get("strength") == 0:
            report.notes.append("The steering strength is 0: steered and unsteered are the same model.")
    if report.random_weights:
        report.notes.append("Random weights: this tiny test model's answers are meaningless.")
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------------------------ where it looked


@dataclass
class ProbeHeatmap:
    """The contrastive patch heatmap of one probe: IG of log P(truthful answer) - log P(the other answer), so red
    patches push toward the truth and blue ones toward the wrong answer (for an absent object: toward a false
    "yes")."""

    probe: Probe
    chosen: str
    rejected: str
    result: Any  # AttributionResult

    @property
    def grid(self) -> list[list[float]] | None:
        return self.result.image_grid

    @property
    def converged(self) -> bool:
        return self.result.converged

    def overlay(self, image: Any, alpha: float = 0.55) -> Any:
        """The photo with the heatmap blended over it (a PIL image of the photo's size)."""
        from grains.images import load_image
        from grains.overlay import patch_overlay

        if self.grid is None:
            raise InputError("This model gave no patch grid for the image.")
        box = (self.result.extra or {}).get("crop_box")
        return patch_overlay(load_image(image), self.grid, alpha=alpha, box=tuple(box) if box else None)

    def summary(self) -> dict[str, Any]:
        r = self.result
        extra = r.extra or {}
        return _json_safe({
            "object": self.probe.object, "truth": self.probe.truth, "question": self.probe.question,
            "chosen": self.chosen, "rejected": self.rejected, "f": r.f_input, "f_baseline": r.f_baseline,
            "delta": r.delta, "relative_delta": r.relative_delta, "converged": r.converged, "steps": r.steps,
            "image_share": extra.get("image_share"), "image_token_count": extra.get("image_token_count"),
            "grid_shape": [len(r.image_grid), len(r.image_grid[0])] if r.image_grid else None,
            "seconds": r.seconds,
            "legend": "red = pushes toward the truthful answer, blue = toward the wrong one",
        })


def where_the_model_looked(lm: Any, image: Any, probe: Probe | str, truth: str | None = None, steps: int = 16,
                           target: str = "sequence") -> ProbeHeatmap:
    """Contrastive IG over the photo's patches for one probe, chosen = the truthful answer ("No" for an absent
    object), rejected = the other, through `grains.attribute`.

    Args:
        lm: a loaded VLM.
        image: the photo (path, bytes or PIL).
        probe: a Probe from a report, or an object name (then give `truth`: "yes" or "no").
        truth: for an object name.
        steps: IG integration points.
        target: "sequence" or "last" (see grains.attribute).

    Returns:
        A ProbeHeatmap (the grid, the convergence delta, and `.overlay(image)`).
    """
    from grains.attribution import attribute
    from grains.vlm.pope import NO, YES

    pil, info = _open(lm, image)
    if isinstance(probe, str):
        if truth not in ("yes", "no"):
            raise InputError("Say whether the object is in the photo: truth must be 'yes' or 'no'.")
        probe = make_probes(pil, [probe] if truth == "yes" else [], [probe] if truth == "no" else [],
                            digest=info["digest"])[0]
    chosen, rejected = (YES, NO) if probe.truth == "yes" else (NO, YES)
    with lm.lock:
        result = attribute(lm, probe.question, chosen, rejected, image=pil, steps=steps, target=target)
    return ProbeHeatmap(probe=probe, chosen=chosen, rejected=rejected, result=result)


# ------------------------------------------------------------------------------------------------ steer and re-check


def split_probes(probes: Sequence[Probe], build_share: float = 0.5, seed: int = 0) -> tuple[list[Probe], list[Probe]]:
    """(build, check): a seeded split of the user's probes, stratified by truth, that never shares a probe id.

    Each side gets at least one probe; with both truths present, the check side keeps at least one of each when
    there are two or more of that truth."""
    if not 0 < build_share < 1:
        raise InputError("The share of probes used to build must be between 0 and 1.")
    unique: dict[str, Probe] = {}
    for p in probes:
        unique.setdefault(p.id, p)
    if len(unique) < 2:
        raise InputError("Building from your own probes needs at least 2 (some to build from, the rest to check).")
    rng = random.Random(seed)
    build: list[Probe] = []
    check: list[Probe] = []
    for truth in ("yes", "no"):
        group = [p for p in unique.values() if p.truth == truth]
        rng.shuffle(group)
        if not group:
            continue
        n_build = int(len(group) * build_share)  # rounded down: the check side keeps the odd probe
        n_build = min(max(n_build, 1 if len(group) >= 2 else 0), len(group) - 1 if len(group) >= 2 else len(group))
        build += group[:n_build]
        check += group[n_build:]
    if not build:
        build.append(check.pop(0))
    if not check:
        check.append(build.pop())
    return build, check


def shipped_probes(exclude_digest: str | None = None, limit: int = 16, seed: int = 0) -> tuple[list[Probe], int]:
    """Up to `limit` probes from the shipped POPE-style set, balanced between yes and no, leaving out every probe
    about the photo with digest `exclude_digest` (so a check of a shipped photo never sees its own probes built in).

    Returns:
        (probes, how many shipped probes were left out because they ask about the checked photo).
    """
    from grains.data import load_builtin
    from grains.images import load_image

    _, rows = load_builtin(SHIPPED_PROBES)
    digests: dict[str, str] = {}
    pool: list[Probe] = []
    left_out = 0
    for row in rows:
        if row.image not in digests:
            digests[row.image] = image_digest(load_image(row.image))
        digest = digests[row.image]
        if digest == exclude_digest:
            left_out += 1
            continue
        name = row.object or row.question
        pool.append(Probe(object=name, truth=row.answer.strip().lower(), question=row.question,
                          id=f"{digest}:{object_key(name)}", image=row.image, source="shipped"))
    rng = random.Random(seed)
    yes = [p for p in pool if p.truth == "yes"]
    no = [p for p in pool if p.truth == "no"]
    rng.shuffle(yes)
    rng.shuffle(no)
    picked: list[Probe] = []
    while len(picked) < limit and (yes or no):
        for group in (yes, no):
            if group and len(picked) < limit:
                picked.append(group.pop())
    return picked, left_out


def _as_pairs(probes: Sequence[Probe]) -> list[Any]:
    from grains.vlm.pope import probes_to_pairs

    return probes_to_pairs([{"image": p.image, "question": p.question, "answer": p.truth, "object": p.object}
                            for p in probes])


def steer_and_recheck(lm: Any, image: Any, present: str | Sequence[str] | None = None,
                      absent: str | Sequence[str] | None = None, setting: str | None = None, source: str = "shipped",
                      build_share: float = 0.5, max_build: int = 16, method: str = "grains", k: int = 5,
                      steps: int = 8, layer: Any = None, strength: float | None = None, normalize: bool = True,
                      n_absent: int | None = None, seed: int = 0, template: str = QUESTION_TEMPLATE,
                      progress: Progress = None, should_stop: Callable[[], bool] | None = None) -> CheckReport:
    """Build a steering vector (chosen = the truthful answer, as in the paper's MMHal setting), then check the photo
    unsteered and steered on probes the vector never saw.

    Args:
        lm, image, present, absent, setting, n_absent, seed, template: as in `check_image`.
        source: "shipped" (the shipped POPE-style probes, minus any about this photo; every probe of the photo is
            checked) or "user" (the photo's own probes, split into build and check by `build_share`, stratified).
        max_build: at most this many shipped probes (balanced yes/no).
        method, k, steps: for `grains.build_vector` (layer and strength cross-validated on the build probes).
        layer, strength: override the vector's suggested layer and strength for the re-check.
        progress, should_stop: callbacks.

    Returns:
        A CheckReport with `split` (which probe ids built the vector, which were checked; they never overlap) and
        `build` (the vector's summary; the vector itself is `report.vector`).
    """
    from grains.build import build_vector

    if source not in ("shipped", "user"):
        raise InputError("Build the vector from 'shipped' probes or from the 'user' probes of this photo.")
    if isinstance(max_build, bool) or not isinstance(max_build, int) or not 2 <= max_build <= 64:
        raise InputError("The number of shipped probes to build from must be a whole number from 2 to 64.")
    pil, info = _open(lm, image)
    vocab = load_vocabulary()
    present_list, absent_list, proposal = resolve_objects(present, absent, setting, n_absent, seed, vocab)
    probes = make_probes(pil, present_list, absent_list, template, info["digest"], vocab)
    if source == "user":
        build_probes, check_probes = split_probes(probes, build_share, seed)
        order = {p.id: i for i, p in enumerate(probes)}
        build_probes.sort(key=lambda p: order[p.id])
        check_probes.sort(key=lambda p: order[p.id])
        left_out = 0
    else:
        build_probes, left_out = shipped_probes(info["digest"], max_build, seed)
        check_probes = list(probes)
    build_ids = [p.id for p in build_probes]
    check_ids = [p.id for p in check_probes]
    if set(build_ids) & set(check_ids):  # a guard: the split functions above make this impossible
        raise RuntimeError("The build and check probes overlap.")
    sub = (lambda f, m: progress(0.7 * f, f"building: {m}")) if progress else None
    built = build_vector(lm, _as_pairs(build_probes), method=method, k=k, steps=steps, folds=3,
                         select=len(build_probes) >= 2, progress=sub, should_stop=should_stop, seed=seed)
    sub = (lambda f, m: progress(0.7 + 0.3 * f, m)) if progress else None
    report = check_image(lm, pil, present_list, absent_list, None, built.vector, layer, strength, normalize,
                         seed=seed, template=template, only=check_ids, progress=sub)
    report.image = info
    report.proposal = proposal
    where = ("the shipped POPE-style probes" + (f" ({left_out} about this same photo left out)" if left_out else "")
             if source == "shipped" else "this photo's own probes")
    report.split = {
        "source": source, "build_ids": build_ids, "check_ids": check_ids,
        "build_objects": [f"{p.object} ({p.truth})" for p in build_probes],
        "check_objects": [f"{p.object} ({p.truth})" for p in check_probes],
        "n_build": len(build_ids), "n_check": len(check_ids), "left_out_same_photo": left_out,
        "note": (f"The vector was built from {len(build_ids)} probes ({where}) and checked on {len(check_ids)} other "
                 "probes: no probe is in both."),
    }
    report.build = built.summary()
    report.vector = built.vector
    if strength is None and built.vector.default_strength == 0:
        report.notes.insert(0, "Cross-validation on the build probes found no strength that beats 0, so the re-check "
                               "steers at strength 0 (the unsteered model). Give a strength to try one anyway.")
    return report
