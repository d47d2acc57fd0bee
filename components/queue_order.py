"""Within a lane, quicker jobs first: a job that joins goes ahead of the waiting jobs expected to take longer (a
3-second Generate ahead of a new 15-second attribution), but never ahead of a job that has already waited
`ServerLimits.overtake_seconds`, so a long job's wait stays bounded.

Why: after the classroom's first minute, a short lane on a 2-core CPU spends most of its time on new attributions
of students' own examples, and every Generate queued behind them waited for all of them. Shortest expected job first
lowers the waits of the many quick jobs at a small cost to the few slow ones (whose wait is capped by the rule above).
The expected time of a kind of job is Gradio's own running average of its past runs in this server
(`process_time_per_fn`, the same figure its queue estimates use); a kind that has not run yet overtakes nothing and
is overtaken by nothing.
"""

from __future__ import annotations

import time
from typing import Any

JOINED_AT = "_grains_joined"  # monotonic seconds when the job joined its lane (set here on each job)


def expected_seconds(queue: Any, fn: Any) -> float | None:
    """Gradio's running average of this kind of job's run time in this server (None before its first run)."""
    stats = queue.process_time_per_fn.get(fn)
    return getattr(stats, "avg_time", None) if stats is not None else None


def place_quicker_first(queue: Any, event_id: str, overtake_seconds: float, now: float | None = None) -> int:
    """Move a job that has just joined the end of its lane ahead of the waiting jobs expected to take longer than it,
    stopping at the first one that is not (or has waited `overtake_seconds`, or whose kind has no run time yet).

    Args:
        queue: the app's Gradio queue.
        event_id: the job (as `push` returned it).
        overtake_seconds: jobs that have waited this long are not overtaken (0: first come, first served).
        now: time.monotonic() (for tests).

    Returns:
        How many jobs it went ahead of (0 when it stays last, or is not waiting: answered from memory).
    """
    event = queue.event_ids_to_events.get(event_id)
    now = time.monotonic() if now is None else now
    if event is None:
        return 0
    setattr(event, JOINED_AT, getattr(event, JOINED_AT, now))
    lane = queue.event_queue_per_concurrency_id.get(event.concurrency_id)
    if lane is None or event not in lane.queue or overtake_seconds <= 0:
        return 0
    mine = expected_seconds(queue, event.fn)
    if mine is None:
        return 0
    waiting = lane.queue
    at = place = waiting.index(event)
    while place > 0:
        ahead = waiting[place - 1]
        cost = expected_seconds(queue, ahead.fn)
        if cost is None or cost <= mine or now - getattr(ahead, JOINED_AT, now) >= overtake_seconds:
            break
        place -= 1
    if place < at:
        waiting.insert(place, waiting.pop(at))
        queue.broadcast_estimations(event.concurrency_id)  # everyone's place and estimate, anew
    return at - place
