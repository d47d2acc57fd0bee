"""The model cache: loaded models shared by every session (the least recently used dropped beyond a number of models
or a memory budget for their weights), and the shipped default vector that goes with a model.

Nothing here imports gradio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from components.queue_bypass import NotInMemory, memory_only
from grains.errors import VectorError

if TYPE_CHECKING:
    from components.session import Session
    from grains.models import LoadedModel
    from grains.vectors import SteeringVector

DEFAULT_VECTOR_PATH = Path(__file__).resolve().parent.parent / "assets" / "default_vector.safetensors"
MAX_LOADED_MODELS = 4
MAX_LOADED_BYTES = 6 * 2**30  # weights kept in memory at once (the newest model always stays, whatever its size)


def weight_bytes(lm: object) -> int:
    """The bytes of a loaded model's parameters (0 for anything without a torch model)."""
    parameters = getattr(getattr(lm, "model", None), "parameters", None)
    if not callable(parameters):
        return 0
    return sum(p.numel() * p.element_size() for p in parameters())


class ModelCache:
    """Loaded models keyed by name, shared across sessions. The least recently used are dropped while more than
    `capacity` models are loaded or their weights together exceed `max_bytes`; the newest model always stays, so a
    small model (a tiny test preset) does not push a large one out, and two large ones do not sit in memory together.

    Args:
        capacity: the most models loaded at once.
        max_bytes: the most bytes of weights loaded at once.
        loader: name -> LoadedModel (default: `grains.models.load_model`); tests pass a fake one.
    """

    def __init__(self, capacity: int = MAX_LOADED_MODELS, loader: Callable[[str], LoadedModel] | None = None,
                 max_bytes: int = MAX_LOADED_BYTES):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self, name: str) -> LoadedModel:
        if self._loader is not None:
            return self._loader(name)
        from grains.models import load_model

        return load_model(name)

    def get(self, name: str) -> LoadedModel:
        """The model called `name`, loading it when needed (raises ModelLoadError; the cache is left as it was).

        Args:
            name: a preset, hub id or local path.

        Returns:
            The loaded model.
        """
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            lm = self._load(name)
            self._models[name] = lm
            while len(self._models) > 1 and (len(self._models) > self.capacity
                                             or sum(map(weight_bytes, self._models.values())) > self.max_bytes):
                self._models.popitem(last=False)
            return lm

    def peek(self, name: str) -> LoadedModel | None:
        """The model if it is loaded, without loading it."""
        return self._models.get(name)

    def loaded(self) -> list[str]:
        """The names of the loaded models, least recently used first."""
        return list(self._models)

    def clear(self) -> None:
        """Drop every loaded model."""
        with self._lock:
            self._models.clear()


MODELS = ModelCache()


def session_model(session: Session) -> LoadedModel:
    """The session's model (reloaded into the shared cache if another session's load pushed it out).

    Args:
        session: whose model.

    Returns:
        The loaded model.
    """
    if memory_only() and MODELS.peek(session.model_name) is None:  # a queue probe never loads a model
        raise NotInMemory
    return MODELS.get(session.model_name)


def default_vector_label(vector: SteeringVector) -> str:
    """"shipped default (<concept>)", from the vector's own metadata (its concept, else its dataset).

    Args:
        vector: the shipped vector.

    Returns:
        The label the vector card shows.
    """
    meta = getattr(vector, "meta", None) or {}
    what = str(meta.get("concept") or str(meta.get("dataset") or "").replace(" (shipped)", "") or "no concept recorded")
    return f"shipped default ({what})"


def default_vector_for(model_name: str) -> SteeringVector | None:
    """The shipped default vector when it was built for `model_name` (None otherwise or when it is missing).

    Args:
        model_name: the session's model name.

    Returns:
        The vector, or None.
    """
    if not DEFAULT_VECTOR_PATH.is_file():
        return None
    from grains.vectors import load_vector

    try:
        vector = load_vector(DEFAULT_VECTOR_PATH)
    except VectorError:
        return None
    return vector if vector.model_id == model_name else None
