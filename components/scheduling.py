"""Fair scheduling for a shared server: two lanes (short interactive jobs, long batch jobs) with their own slots,
long jobs that pause at each decoder layer while a short job runs, per-user limits checked when a job joins the
queue, a per-job time limit, and cancelling one's waiting jobs.

Why two lanes and not one queue: with one slot, a student's 8-minute build held the model and every other student's
5-second Generate waited behind it. Jobs of the two lanes now run at the same time on the same model; that is safe
because steering hooks act only for the job that installed them (grains.local_hooks) and the
model's lock is one lock per lane (grains.lanes). The lanes are Gradio concurrency groups (`concurrency_id`), so
Gradio itself shows every waiting job its place in its lane and an estimate from that lane's past run times.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from components.queue_bypass import forbid_model_work_in_probe, join, marked, probe_first
from components.queue_order import place_quicker_first
from grains.lanes import CURRENT_LANE, in_lane

SHORT_QUEUE = "short"  # attribute one example, generate a pair, a probe heatmap, load a vector
LONG_QUEUE = "long"  # build, evaluate, sweeps, check an image, load a model, recipes
LANES = (SHORT_QUEUE, LONG_QUEUE)
# Named API endpoints by lane (an endpoint not listed runs in the long lane).
API_LANES = {"attribute": SHORT_QUEUE, "attribute_steered": SHORT_QUEUE, "generate": SHORT_QUEUE,
             "load_vector": SHORT_QUEUE, "probe_heatmap": SHORT_QUEUE}


@dataclass(frozen=True)
class ServerLimits:
    """What one server allows. The defaults suit one person; `classroom()` suits a class sharing a 2-core CPU.

    Args:
        short_slots: short jobs that run at once.
        long_slots: long jobs that run at once.
        max_rows: the most rows a build or evaluation may take (None: the app's own cap).
        job_seconds: a running job is stopped after this many seconds (None: no limit).
        queued_per_user: the most jobs one user may have waiting (None: no limit).
        long_per_user: the most long jobs one user may have waiting or running (None: no limit).
        long_yield_seconds: while a short job runs, a long job waits up to this long at each of its forward passes
            (0: never), so the short job has the CPU to itself (see `yield_to_short_jobs`).
        overtake_seconds: a job joining a lane goes ahead of waiting jobs expected to take longer, unless they have
            waited this long (0: first come, first served; components.queue_order).
    """

    short_slots: int = 1
    long_slots: int = 1
    max_rows: int | None = None
    job_seconds: float | None = None
    queued_per_user: int | None = None
    long_per_user: int | None = None
    long_yield_seconds: float = 2.0
    overtake_seconds: float = 30.0

    @classmethod
    def classroom(cls) -> ServerLimits:
        """Classroom defaults: 32 rows, 10 minutes a job, 3 waiting jobs and 1 long job per user."""
        return cls(short_slots=1, long_slots=1, max_rows=32, job_seconds=600.0, queued_per_user=3, long_per_user=1)


_LIMITS: list[ServerLimits] = [ServerLimits()]


def current_limits() -> ServerLimits:
    """The limits of the running server (the defaults until `configure_lanes` sets others)."""
    return _LIMITS[0]


def set_limits(limits: ServerLimits) -> None:
    """Make `limits` the running server's (read when a job joins or starts; lane slots are set at build time)."""
    _LIMITS[0] = limits


def lane_for_api(api_name: str) -> str:
    """The lane of a named API endpoint."""
    return API_LANES.get(api_name, LONG_QUEUE)


# ------------------------------------------------------------------------------------------------ time limit

JOB_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("grains_job_deadline", default=None)


class TimeLimitReached(Exception):  # noqa: N818 - reads as the event it is
    """A job ran past the server's per-job time limit (a plain message for the user, not a bug)."""

    user_facing = True

    def __init__(self, seconds: float):
        minutes = seconds / 60
        span = f"{minutes:g} min" if seconds >= 60 else f"{seconds:g} s"
        super().__init__(f"Stopped: this shared server gives each job at most {span} (the teacher's "
                         "--job-time-limit). Try fewer rows or fewer steps.")


def check_deadline(*_: Any) -> None:
    """Raise TimeLimitReached when the current job's deadline has passed (a forward pre-hook on every model)."""
    deadline = JOB_DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline[0]:
        raise TimeLimitReached(deadline[1])


# --------------------------------------------------------------------------------- long jobs yield the CPU

class RunningCount:
    """How many jobs of a kind are running now, and a way to wait until none is."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, seconds: float) -> bool:
        """Wait until none runs, at most `seconds`; True if none runs."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout=max(0.0, seconds))


SHORT_JOBS = RunningCount()


def yield_to_short_jobs(module: Any = None, args: tuple = (), kwargs: dict | None = None) -> None:
    """A forward pre-hook on every decoder layer: in the long lane, while a short job runs, wait (up to the server's
    `long_yield_seconds`, and never past the job's deadline) before the layer runs; and when the layer's input takes
    a gradient, the same pause point in the backward pass (a gradient hook that returns the gradient unchanged), since
    integrated gradients spend as long there as in the forward.

    Why: the two lanes run at once on one CPU. With both running, PyTorch's threads of a build and of a Generate
    share the two cores, so each Generate took about twice as long, and the short lane was busy 94% of the time in the
    classroom load test (short jobs then wait behind each other). Pausing the long job between layers gives a short
    job the whole CPU; the cap keeps a long job moving when short jobs never stop."""
    if CURRENT_LANE.get() != LONG_QUEUE:
        return
    deadline = JOB_DEADLINE.get()
    pause_for_short_jobs(deadline)
    hidden = args[0] if args else (kwargs or {}).get("hidden_states")
    if isinstance(hidden, torch.Tensor) and hidden.requires_grad and current_limits().long_yield_seconds:
        # the deadline is read here: the gradient hook may run where the job's context is not set
        hidden.register_hook(lambda grad: pause_for_short_jobs(deadline))


def pause_for_short_jobs(deadline: tuple[float, float] | None) -> None:
    """Wait while a short job runs: at most the server's `long_yield_seconds` (0: not at all), never past
    `deadline` (the job's (monotonic end, seconds) or None)."""
    seconds = current_limits().long_yield_seconds
    if not seconds or not SHORT_JOBS.count:
        return
    if deadline is not None:
        seconds = min(seconds, deadline[0] - time.monotonic())
    SHORT_JOBS.wait_idle(seconds)


_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_models() -> None:
    """Put the deadline check on every loaded model's first decoder layer, and the long lane's pause points on every
    decoder layer, forward and backward (once per model): a job over its time limit stops at its next forward pass,
    whatever it is doing, and only that job (the deadline is context-local); a long job pauses at the next layer while
    a short job runs; a queue probe (components.queue_bypass) that reaches a forward pass is a miss."""
    from components.model_cache import MODELS

    for name in MODELS.loaded():
        lm = MODELS.peek(name)
        layers = list(lm.adapter.layers) if lm is not None else []
        if layers and layers[0] not in _WATCHED:
            layers[0].register_forward_pre_hook(check_deadline)
            layers[0].register_forward_pre_hook(forbid_model_work_in_probe)
            for layer in layers:  # pre-hooks only: the forward hooks on a layer are the steering ones
                layer.register_forward_pre_hook(yield_to_short_jobs, with_kwargs=True)
            _WATCHED.add(layers[0])


def run_in_lane(fn: Callable, lane: str) -> Callable:
    """`fn` run inside `lane` (grains.lanes) and under the server's per-job time limit; generators too.

    Args:
        fn: an event handler.
        lane: SHORT_QUEUE or LONG_QUEUE.

    Returns:
        The wrapped handler (same signature, same kind).
    """

    def deadline() -> tuple[float, float] | None:
        seconds = current_limits().job_seconds
        return None if not seconds else (time.monotonic() + seconds, seconds)

    def counted() -> AbstractContextManager[None]:
        # a streaming handler counts while each step runs (a step waits for the next token), not while Gradio holds
        # it between steps: a generator that is never closed cannot keep long jobs waiting
        return SHORT_JOBS.running() if lane == SHORT_QUEUE else nullcontext()

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            limit = deadline()
            watch_models()
            inner = fn(*args, **kwargs)
            try:
                while True:  # each step may run in another worker thread and context: enter the lane every time
                    token = JOB_DEADLINE.set(limit)
                    try:
                        with in_lane(lane), counted():
                            item = next(inner)
                    except StopIteration:
                        return
                    finally:
                        JOB_DEADLINE.reset(token)
                    yield item
            finally:
                inner.close()  # a stopped stream closes the handler's generator too (its own cleanup runs)

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        watch_models()
        token = JOB_DEADLINE.set(deadline())
        try:
            with in_lane(lane), counted():
                return fn(*args, **kwargs)
        finally:
            JOB_DEADLINE.reset(token)

    return wrapper


# ------------------------------------------------------------------------------------------ per-user limits

def refusal(lane: str, waiting: list[str], running: list[str], limits: ServerLimits) -> str | None:
    """Why a user's new job may not join the queue (None: it may).

    Args:
        lane: the new job's lane.
        waiting: the lanes of the user's jobs waiting to start.
        running: the lanes of the user's running jobs.
        limits: the server's limits.

    Returns:
        One sentence for the user, or None.
    """
    if limits.queued_per_user is not None and len(waiting) >= limits.queued_per_user:
        return (f"You already have {len(waiting)} jobs waiting (this server allows {limits.queued_per_user}): "
                "wait for one to start, or press \"Cancel my waiting jobs\".")
    if lane == LONG_QUEUE and limits.long_per_user is not None:
        mine = waiting.count(LONG_QUEUE) + running.count(LONG_QUEUE)
        if mine >= limits.long_per_user:
            return ("You already have a long job (build, evaluation, sweep or image check) waiting or running; this "
                    "shared server runs one per person. Wait for it to finish or stop it first.")
    return None


def _same_user(event: Any, username: str | None, session_hash: str | None) -> bool:
    return event.username == username if username else event.session_hash == session_hash


def user_jobs(queue: Any, username: str | None, session_hash: str | None) -> tuple[list[str], list[str]]:
    """(waiting lanes, running lanes) of one user's jobs in a Gradio queue (by login name, else by page session)."""
    waiting = [e.concurrency_id for q in queue.event_queue_per_concurrency_id.values() for e in q.queue
               if e.concurrency_id in LANES and _same_user(e, username, session_hash)]
    running = [e.concurrency_id for batch in queue.active_jobs if batch for e in batch
               if e.concurrency_id in LANES and _same_user(e, username, session_hash)]
    return waiting, running


def guard_queue(demo: Any) -> None:
    """Refuse, when it joins the queue, a job that breaks the per-user limits: Gradio answers the join with our
    sentence (HTTP 400), which the page shows as an error and gradio_client raises. A job that joins is answered
    from memory when it can be (components.queue_bypass), else placed ahead of slower waiting jobs
    (components.queue_order)."""
    queue = getattr(demo, "_queue", None)
    if queue is None or getattr(queue, "_grains_guarded", False):
        return
    original = queue.push
    lock = asyncio.Lock()

    async def push(body: Any, request: Any, username: str | None) -> Any:
        fn = demo.fns.get(body.fn_index) if body.fn_index is not None else None
        lane = getattr(fn, "concurrency_id", None)
        if lane not in LANES:
            return await original(body, request, username)
        async with lock:  # the check and the join together, so two quick clicks cannot both pass
            waiting, running = user_jobs(queue, username, body.session_hash)
            reason = refusal(lane, waiting, running, current_limits())
            if reason is not None:
                return False, reason, "error"
            joined = await join(original, queue, fn, body, request, username)  # answers in memory skip the lane
            if joined[0]:
                place_quicker_first(queue, joined[1], current_limits().overtake_seconds)
            return joined

    queue.push = push
    queue._grains_guarded = True


async def cancel_waiting(demo: Any, session_hash: str | None) -> int:
    """Take this page's waiting jobs (not yet started) out of the lanes and tell the page they ended, as Gradio's
    own /cancel does for one job.

    Args:
        demo: the app.
        session_hash: the page's session.

    Returns:
        How many jobs were cancelled.
    """
    from gradio.server_messages import ProcessCompletedMessage

    queue = getattr(demo, "_queue", None)
    if queue is None or not session_hash:
        return 0
    mine = [e for q in queue.event_queue_per_concurrency_id.values() for e in list(q.queue)
            if e.concurrency_id in LANES and e.session_hash == session_hash]
    for event in mine:
        await queue.remove_from_queue(event._id)
        messages = queue.pending_messages_per_session.get(session_hash)
        if messages is not None:
            messages.put_nowait(ProcessCompletedMessage(output={}, success=True, event_id=event._id))
    return len(mine)


def configure_lanes(demo: Any, limits: ServerLimits | None = None) -> None:
    """After `demo.queue(...)`: give each lane its slots, run every lane handler in its lane under the time limit,
    let the handlers marked `answers_from_memory` answer from memory without queueing (components.queue_bypass),
    and check the per-user limits when a job joins.

    Args:
        demo: the app.
        limits: the server's limits (default: the single-user defaults).
    """
    set_limits(limits or ServerLimits())
    slots = {SHORT_QUEUE: _LIMITS[0].short_slots, LONG_QUEUE: _LIMITS[0].long_slots}
    for fn in demo.fns.values():
        lane = getattr(fn, "concurrency_id", None)
        if lane in LANES and fn.fn is not None and not getattr(fn.fn, "_grains_lane", None):
            fn.concurrency_limit = max(1, int(slots[lane]))
            wrapped = run_in_lane(fn.fn, lane)
            fn.fn = probe_first(wrapped) if marked(fn.fn) else wrapped  # answers in memory skip the queue
            fn.fn._grains_lane = lane
    guard_queue(demo)
