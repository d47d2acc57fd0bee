"""App state: models shared by every session (a small cache), everything else per session (`Session` in gr.State).

Nothing here imports gradio: handlers in the panels turn `GrainsError`s into `gr.Error`s.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grains.errors import GrainsError, InputError, VectorError

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
IMAGES_DIR = ASSETS / "images"
DEFAULT_VECTOR_PATH = ASSETS / "default_vector.safetensors"
MAX_LOADED_MODELS = 2
MAX_UPLOAD = "25mb"
# The first screen tells one story with the shipped sentiment vector: a sentiment pair to attribute (raw prompt,
# positive vs negative continuation; sentiment_pairs row 167, after the rows the default vector was built from)
# and a neutral prompt to continue with and without the vector (neutral_prompts_heldout.jsonl). The prompt is an
# illustration, picked because its unsteered continuation turns negative; what measures the vector is its held-out
# evaluation over all 40 of those prompts (stored in the vector, shown in the recipe box).
DEFAULT_EXAMPLE = {"prompt": "Honestly, the pizza from that new delivery app",
                   "chosen": " arrived hot and tasted fantastic.", "rejected": " arrived cold and tasted dreadful."}
DEFAULT_COMPARE_PROMPT = "For lunch I had a sandwich, and"


class ModelCache:
    """Loaded models keyed by name, shared across sessions; the least recently used is dropped beyond `capacity`."""

    def __init__(self, capacity: int = MAX_LOADED_MODELS, loader: Callable[[str], Any] | None = None):
        self.capacity = capacity
        self._loader = loader
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self, name: str) -> Any:
        if self._loader is not None:
            return self._loader(name)
        from grains.models import load_model

        return load_model(name)

    def get(self, name: str) -> Any:
        """The model called `name`, loading it when needed (raises ModelLoadError; the cache is left as it was)."""
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            lm = self._load(name)
            self._models[name] = lm
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return lm

    def peek(self, name: str) -> Any | None:
        """The model if it is loaded, without loading it."""
        return self._models.get(name)

    def loaded(self) -> list[str]:
        return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = ModelCache()


@dataclass
class Session:
    """One browser tab's (or API client's) state: its model name, vector, last attribution, token overrides."""

    model_name: str
    vector: Any = None  # SteeringVector
    vector_label: str = ""
    vector_path: str | None = None  # a saved copy, for download
    allow_other_model: bool = False  # the user ticked "allow a vector from another model" when loading this vector
    attribution: Any = None  # AttributionResult
    example: Any = None  # EncodedExample of the last attribution (for top-k eligibility)
    inputs: dict[str, Any] = field(default_factory=dict)  # prompt, chosen, rejected, image (path), steps, ...
    overrides: dict[str, list[int]] = field(
        default_factory=lambda: {"force_positive": [], "force_negative": [], "drop": []}
    )
    cancel: bool = False  # set by the Cancel button while a build is pending or running
    build_pending: bool = False
    last_build: dict[str, Any] | None = None
    last_generation: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None

    def clear_overrides(self) -> None:
        self.overrides = {"force_positive": [], "force_negative": [], "drop": []}

    def set_vector(self, vector: Any, label: str, path: str | None = None, allow_other_model: bool = False) -> None:
        self.vector, self.vector_label, self.vector_path = vector, label, path
        self.allow_other_model = bool(allow_other_model)


def new_session(model_name: str) -> Session:
    """A fresh session, with the shipped default vector when it fits the model."""
    session = Session(model_name=model_name)
    vector = default_vector_for(model_name)
    if vector is not None:
        session.set_vector(vector, default_vector_label(vector), str(DEFAULT_VECTOR_PATH))
    return session


def default_vector_label(vector: Any) -> str:
    """"shipped default (<concept>)", from the vector's own metadata (its concept, else its dataset)."""
    meta = getattr(vector, "meta", None) or {}
    what = str(meta.get("concept") or str(meta.get("dataset") or "").replace(" (shipped)", "") or "no concept recorded")
    return f"shipped default ({what})"


def default_vector_for(model_name: str) -> Any | None:
    """The shipped default vector when it was built for `model_name` (None otherwise or when it is missing)."""
    if not DEFAULT_VECTOR_PATH.is_file():
        return None
    from grains.vectors import load_vector

    try:
        vector = load_vector(DEFAULT_VECTOR_PATH)
    except VectorError:
        return None
    return vector if vector.model_id == model_name else None


def cycle_override(overrides: dict[str, list[int]], index: int) -> str:
    """Cycle token `index` through auto -> forced positive -> forced negative -> dropped -> auto; return its state."""
    order = ["force_positive", "force_negative", "drop"]
    current = next((key for key in order if index in overrides[key]), None)
    for key in order:
        overrides[key] = [i for i in overrides[key] if i != index]
    following = order[0] if current is None else (order[order.index(current) + 1] if current != "drop" else None)
    if following is not None:
        overrides[following] = sorted(overrides[following] + [index])
    return following or "auto"


def parse_indices(text: str | None, what: str, limit: int | None = None) -> list[int]:
    """'1, 4 7' -> [1, 4, 7]; raises InputError on anything but whole numbers (in range when `limit` is given)."""
    out: list[int] = []
    for part in (text or "").replace(",", " ").split():
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"{what}: {part!r} is not a token index (a whole number).") from None
        if value < 0 or (limit is not None and value >= limit):
            upper = f" to {limit - 1}" if limit is not None else " or more"
            raise InputError(f"{what}: token index {value} is out of range (0{upper}).")
        out.append(value)
    return sorted(set(out))


def parse_numbers(text: str | None, what: str, whole: bool = False) -> list[float]:
    """'0, 0.25 0.5' -> [0.0, 0.25, 0.5]; raises InputError on anything that is not a finite number."""
    out: list[float] = []
    for part in (text or "").replace(",", " ").split():
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"{what}: {part!r} is not a number.") from None
        if not math.isfinite(value):
            raise InputError(f"{what}: {part!r} is not a finite number.")
        if whole and not value.is_integer():
            raise InputError(f"{what}: {part!r} is not a whole number.")
        out.append(value)
    if not out:
        raise InputError(f"{what}: give at least one number.")
    return out


_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A fresh folder for a file the user downloads (vectors, CSVs) under one per-process temp dir, removed at exit
    (Gradio copies returned files into its own cache)."""
    if not _SCRATCH:
        root = Path(tempfile.mkdtemp(prefix="grains-studio-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SCRATCH.append(root)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH[0]))


def user_message(exc: BaseException) -> str:
    """One sentence for the user: the GrainsError's message, or a short generic line for anything else."""
    if isinstance(exc, GrainsError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Unexpected {type(exc).__name__}: {first}"[:300]
