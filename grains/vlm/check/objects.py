"""Object names for the hallucination check: normalised keys (case, plurals, articles), the shipped vocabulary with
synonyms, popularity and co-occurrence, parsing of the user's lists, and the absent-object proposal in POPE's three
settings (random, popular, adversarial). A proposal never contains an object listed as present."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from grains.errors import InputError

Setting = Literal["random", "popular", "adversarial"]
SETTINGS: tuple[str, ...] = ("random", "popular", "adversarial")
MAX_OBJECTS = 50  # per list: each object is one model call per condition
MAX_OBJECT_CHARS = 60
VOCABULARY_PATH = Path(__file__).resolve().parents[3] / "assets" / "data" / "object_vocabulary.json"

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

    Example:
        >>> object_key("a Wine-Glasses")
        'wine glass'
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
    """Object names for proposing absent objects, with a popularity order, a co-occurrence table and synonyms.

    Args:
        objects: the object names.
        popularity, cooccurrence, synonyms: as read from assets/data/object_vocabulary.json.
        notice: where the tables come from.

    Example:
        >>> vocab = load_vocabulary()
        >>> vocab.canonical("Cats"), vocab.names_same_object("tv", "television")
        ('cat', True)
    """

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

    Example:
        >>> parse_objects("cat, sofa, Cats", "present")
        ['cat', 'sofa']
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
    """Absent objects proposed in one POPE setting, and how they were chosen.

    Args:
        setting: "random", "popular" or "adversarial".
        objects: the proposed absent objects.
        scores: what ranked each one (popularity or co-occurrence).
        notes: plain sentences (e.g. when too few objects co-occur).

    Example:
        >>> propose_absent(["dog"], "popular", 3).objects
        ['person', 'car', 'chair']
    """

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

    Example:
        >>> propose_absent(["dog"], "popular", 3).objects
        ['person', 'car', 'chair']
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
