"""Answers already in the server's memory skip the queue: a student who presses Attribute or Generate on a question
the server has answered before (the teacher's example, a classmate's prompt) gets the answer at once, instead of
waiting in the short lane behind other students' new questions.

How: Gradio 6 probes, when a job joins the queue, every handler that carries a `cache` attribute. It runs the handler
at once in "probe mode"; the handler either answers (the job never queues) or raises Gradio's CacheMissError (the job
joins its lane as usual and runs there). The handlers marked with `answers_from_memory` take part. While probing they
run "memory only": the result caches (components.result_cache) raise NotInMemory for a question they do not hold,
a model that is not loaded raises it, and so does any forward pass of a loaded model (components.scheduling's
pre-hook), so no model work ever runs outside the lanes. A generator's outputs are held back until it has finished,
so a probe that misses halfway has sent nothing.

Nothing here changes what a job computes: a probe answers only with what the queued run would have served from the
same caches.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

MEMORY_ONLY: ContextVar[bool] = ContextVar("grains_memory_only", default=False)


class NotInMemory(Exception):  # noqa: N818 - reads as the event it is
    """While probing: the answer is not in the server's memory, so the job must queue."""


def memory_only() -> bool:
    """Whether the running code may only answer from memory (a queue probe)."""
    return MEMORY_ONLY.get()


def require_in_memory(found: Any) -> Any:
    """`found`, unless it is None while probing (then NotInMemory)."""
    if found is None and memory_only():
        raise NotInMemory
    return found


def forbid_model_work_in_probe(*_: Any) -> None:
    """Raise NotInMemory when a model runs while probing (a forward pre-hook on every watched model)."""
    if memory_only():
        raise NotInMemory


@contextmanager
def answering_from_memory() -> Iterator[None]:
    """Run the block memory only."""
    token = MEMORY_ONLY.set(True)
    try:
        yield
    finally:
        MEMORY_ONLY.reset(token)


def answers_from_memory(fn: Callable) -> Callable:
    """Mark an event handler whose answer the server may already hold (components.result_cache): when the app's
    lanes are configured (components.scheduling.configure_lanes), it gets `probe_first`.

    Args:
        fn: the handler.

    Returns:
        `fn`, marked.
    """
    fn._grains_answers_from_memory = True  # copied onto wrappers by functools.wraps
    return fn


def marked(fn: Callable) -> bool:
    """Whether `fn` (or what it wraps) was marked with `answers_from_memory`."""
    return bool(getattr(fn, "_grains_answers_from_memory", False))


class _ProbeMarker:
    """What Gradio finds as a handler's `cache`: it probes the handler when a job joins; a Gradio cache store of our
    own it is not (`_per_session` False: nothing per session to clear)."""

    _per_session = False


def _gradio_probe() -> tuple[Callable[[], bool], type[Exception]] | None:
    try:
        from gradio.caching import CacheMissError, _probe_mode_active
    except ImportError:  # a Gradio without queue probes: every job queues, as before
        return None
    return _probe_mode_active.get, CacheMissError


def probe_first(fn: Callable) -> Callable:
    """`fn`, probed by Gradio when a job joins the queue: in probe mode it runs memory only, and anything but a
    complete answer (NotInMemory, or any error, which the queued run reports properly) becomes Gradio's CacheMissError
    so the job queues. Outside probe mode it is `fn` unchanged.

    Args:
        fn: an event handler (plain or generator), outermost wrapper (it sees every error).

    Returns:
        The wrapped handler, with Gradio's `cache` marker.
    """
    probe = _gradio_probe()
    if probe is None:
        return fn
    probing, cache_miss = probe

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            if not probing():
                yield from fn(*args, **kwargs)
                return
            try:
                with answering_from_memory():
                    outputs = list(fn(*args, **kwargs))  # held back: a miss halfway must not have sent anything
            except Exception as exc:  # noqa: BLE001 - the queued run reports real errors
                raise cache_miss from exc
            yield from outputs

        wrapper: Callable = gen_wrapper
    else:
        @functools.wraps(fn)
        def plain_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not probing():
                return fn(*args, **kwargs)
            try:
                with answering_from_memory():
                    return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the queued run reports real errors
                raise cache_miss from exc

        wrapper = plain_wrapper
    wrapper.cache = _ProbeMarker()
    return wrapper


async def join(push: Callable, queue: Any, fn: Any, body: Any, request: Any, username: str | None) -> Any:
    """Gradio's queue `push` for one job, probed when its handler is marked; a probe that fails before the handler
    runs (an input Gradio's own preprocessing refuses, such as a text file named .jpg) would answer the join with
    a server error, so the half-registered job is forgotten and it joins its lane without a probe, where the queued
    run reports the input's problem as usual.

    Args:
        push: Gradio's original `push`.
        queue: the app's queue.
        fn: the job's BlockFunction.
        body, request, username: `push`'s arguments.

    Returns:
        What `push` returns.
    """
    handler = getattr(fn, "fn", None)
    marker = getattr(handler, "cache", None)
    if not isinstance(marker, _ProbeMarker):
        return await push(body, request, username)
    pending = queue.pending_event_ids_session
    before = set(pending.get(body.session_hash, ()))
    try:
        return await push(body, request, username)
    except Exception:  # noqa: BLE001 - whatever failed, the queued run reports it
        for event_id in set(pending.get(body.session_hash, ())) - before:
            pending[body.session_hash].discard(event_id)
            queue.event_ids_to_events.pop(event_id, None)
        del handler.cache  # callers hold the join lock, so no other join sees the handler unmarked
        try:
            return await push(body, request, username)
        finally:
            handler.cache = marker
