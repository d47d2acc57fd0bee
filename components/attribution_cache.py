"""Finished attributions kept in memory for every session of this server: the same question (model, exact text,
image, IG settings, steering) asked again, by the same user or another, is answered from here instead of another
minute of integrated gradients on a CPU. A classroom pressing Attribute on the first screen's example computes it
once.

What makes a question the same is everything the result depends on: the loaded model object itself (a model
dropped from the model cache and loaded again starts afresh), the prompt format, the three texts, the image's
bytes, steps, target, baseline, integration rule and tolerance, and for a steered run the vector's numbers, layers,
strength and norm switch. Each caller gets its own copy; the copy's `extra["cached"]` says it was served from here.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.models import LoadedModel
    from grains.steering import Steering

MAX_ENTRIES = 32  # a result is a few lists of floats: 32 of them are small next to one model


def file_digest(path: str | None) -> str | None:
    """sha256 of a file's bytes (None for no file): an image re-uploaded under another name is the same image."""
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def steering_digest(steering: Steering | None) -> tuple | None:
    """What a steered result depends on: the vector's numbers and the setting (None: unsteered)."""
    if steering is None:
        return None
    vector = steering.vector
    h = hashlib.sha256()
    for layer in sorted(vector.directions):
        h.update(str(layer).encode())
        h.update(vector.directions[layer].detach().float().cpu().numpy().tobytes())
        h.update(repr(float(vector.layer_norms.get(layer, 0.0))).encode())
    return h.hexdigest(), tuple(steering.layers), float(steering.strength), bool(steering.normalize)


def is_cached(result: AttributionResult) -> bool:
    """Whether `result` is a copy the cache answered with (not computed for this request)."""
    return bool((result.extra or {}).get("cached"))


class AttributionCache:
    """A bounded, thread-safe map from a question to its finished AttributionResult (least recently used first out).

    Args:
        max_entries: results kept.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, tuple[weakref.ref, AttributionResult]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(lm: LoadedModel, inputs: dict[str, Any], steering: Steering | None = None) -> tuple:
        """The question: model object, prompt format, texts, image digest, IG settings and steering."""
        return (id(lm.model), inputs.get("prompt_format"), inputs["prompt"], inputs["chosen"], inputs["rejected"],
                file_digest(inputs.get("image")), inputs["steps"], inputs["target"], inputs["baseline"],
                inputs["points"], inputs["tolerance"], steering_digest(steering))

    def get(self, lm: LoadedModel, key: tuple) -> AttributionResult | None:
        """A copy of the stored result for `key` on this very model object, marked cached; None if there is none.

        Args:
            lm: the model the question is asked of.
            key: from `key`.

        Returns:
            The copy, or None.
        """
        return self._tally(self._find(lm, key))

    def _tally(self, found: AttributionResult | None) -> AttributionResult | None:
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        return found

    def _find(self, lm: LoadedModel, key: tuple) -> AttributionResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0]() is not lm.model:
                return None
            self._entries.move_to_end(key)
            result = copy.deepcopy(entry[1])
        result.extra["cached"] = True
        return result

    def put(self, lm: LoadedModel, key: tuple, result: AttributionResult) -> None:
        """Store a copy of `result` for `key` (the oldest entry goes beyond `max_entries`)."""
        stored = copy.deepcopy(result)
        stored.extra.pop("cached", None)
        with self._lock:
            self._entries[key] = (weakref.ref(lm.model), stored)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, lm: LoadedModel, key: tuple, compute: Callable[[], AttributionResult]
                       ) -> AttributionResult:
        """The stored result for `key`, or `compute()`'s, stored. Holds the model's lock while computing, and looks
        again once it has it, so two sessions asking the same question at once compute it once.

        Args:
            lm: the model.
            key: from `key`.
            compute: runs the attribution (called with `lm.lock` held).

        Returns:
            The result (a copy when it came from the cache).
        """
        found = self._find(lm, key)
        if found is None:
            with lm.lock:
                found = self._find(lm, key)
                if found is None:
                    result = compute()
                    self.put(lm, key, result)  # before the lock is let go: a waiting twin finds it
        self._tally(found)
        return result if found is None else found

    def clear(self) -> None:
        """Forget every stored result."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


ATTRIBUTIONS = AttributionCache()
