"""Finished results kept in memory for every session of this server, so the same question asked again, by the same
user or another, is answered at once: a bounded, thread-safe, least-recently-used map from a question to a result,
tied to the very model object that computed it (a model dropped from the model cache and loaded again starts afresh),
and the digests that make two questions the same (a file's bytes, a steering setting's numbers).

`components.attribution_cache` (integrated gradients) and `components.generation_cache` (side-by-side continuations)
are the two caches built on it.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from components.queue_bypass import require_in_memory

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

Result = TypeVar("Result")


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


class ResultCache(Generic[Result]):
    """A bounded, thread-safe map from a question to its finished result (least recently used first out). Every
    caller gets its own copy; `mark` / `unmark` say on a copy whether it was served from here.

    Args:
        max_entries: results kept.
    """

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, tuple[weakref.ref, Result]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def mark(self, result: Result) -> None:
        """Note on a copy handed out that it came from here (subclasses say how)."""

    def unmark(self, result: Result) -> None:
        """Take that note off a result about to be stored."""

    def get(self, lm: LoadedModel, key: tuple) -> Result | None:
        """A copy of the stored result for `key` on this very model object, marked; None if there is none.

        Args:
            lm: the model the question is asked of.
            key: the question (each cache's `key`).

        Returns:
            The copy, or None.
        """
        return self._tally(require_in_memory(self._find(lm, key)))

    def _tally(self, found: Result | None) -> Result | None:
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        return found

    def _find(self, lm: LoadedModel, key: tuple) -> Result | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0]() is not lm.model:
                return None
            self._entries.move_to_end(key)
            result = copy.deepcopy(entry[1])
        self.mark(result)
        return result

    def put(self, lm: LoadedModel, key: tuple, result: Result) -> None:
        """Store a copy of `result` for `key` (the oldest entry goes beyond `max_entries`)."""
        stored = copy.deepcopy(result)
        self.unmark(stored)
        with self._lock:
            self._entries[key] = (weakref.ref(lm.model), stored)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, lm: LoadedModel, key: tuple, compute: Callable[[], Result]) -> Result:
        """The stored result for `key`, or `compute()`'s, stored. Holds the model's lock while computing, and looks
        again once it has it, so two sessions asking the same question at once compute it once.

        Args:
            lm: the model.
            key: the question.
            compute: computes the result (called with `lm.lock` held).

        Returns:
            The result (a copy when it came from the cache).
        """
        found = require_in_memory(self._find(lm, key))  # a queue probe stops here on a miss (queue_bypass)
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
