"""Lanes: model calls in different lanes may run at the same time on one shared model; calls in one lane take turns.

A server shares each loaded model between all its users. Steering and recording hooks act only in the context that
installed them (`grains.local_hooks`), so a steered call and an unsteered one can run on the same
model at once without seeing each other's hooks. What is still shared is the CPU, memory and PyTorch's global random
generator, so the model's lock (`LoadedModel.lock`, a `LaneLock`) is one lock per lane: a short interactive job in
the "short" lane never waits for a build holding the "long" lane's lock, while two jobs of one lane still take turns.
Code that never names a lane runs in the "default" lane and behaves exactly as with one lock.

    with in_lane("short"):
        with lm.lock:   # only other "short" calls wait here
            ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

DEFAULT_LANE = "default"
CURRENT_LANE: ContextVar[str] = ContextVar("grains_lane", default=DEFAULT_LANE)
# torch.manual_seed + sampling use PyTorch's one global generator: seeded sampling takes this turn in every lane,
# so a seed gives the same text whatever else the server is doing.
SAMPLING_LOCK = threading.RLock()


@contextmanager
def in_lane(name: str) -> Iterator[None]:
    """Run the block in lane `name` (a thread started inside must copy the context to stay in it).

    Args:
        name: the lane ("short", "long", ...).

    Returns:
        A context manager.
    """
    token = CURRENT_LANE.set(str(name))
    try:
        yield
    finally:
        CURRENT_LANE.reset(token)


def current_lane() -> str:
    """The lane of the running context ("default" when none was named)."""
    return CURRENT_LANE.get()


def sampling_turn(do_sample: bool) -> AbstractContextManager[Any]:
    """The global sampling lock when `do_sample` (seed and draws stay together), else nothing to wait for.

    Args:
        do_sample: whether the generate call samples.

    Returns:
        A context manager.
    """
    return SAMPLING_LOCK if do_sample else nullcontext()


class LaneLock:
    """A re-entrant lock per lane, used like one `threading.RLock` (`with lock:`, `acquire`, `release`).

    The lane is read from the context at `acquire`; `release` frees the lock that this thread took last, so a lane
    change in between cannot unbalance it.
    """

    def __init__(self) -> None:
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._held = threading.local()

    def lane_lock(self, lane: str | None = None) -> threading.RLock:
        """The RLock of `lane` (default: the current lane), created on first use."""
        name = current_lane() if lane is None else lane
        with self._guard:
            if name not in self._locks:
                self._locks[name] = threading.RLock()
            return self._locks[name]

    def _stack(self) -> list[threading.RLock]:
        if not hasattr(self._held, "stack"):
            self._held.stack = []
        return self._held.stack

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the current lane's lock (as `threading.RLock.acquire`)."""
        lock = self.lane_lock()
        taken = lock.acquire(blocking, timeout)
        if taken:
            self._stack().append(lock)
        return taken

    def release(self) -> None:
        """Release the lock this thread took last."""
        stack = self._stack()
        if not stack:
            raise RuntimeError("release of an unacquired LaneLock")
        stack.pop().release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
