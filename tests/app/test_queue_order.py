"""Quicker jobs first within a lane (components.queue_order), on a stand-in for Gradio's queue: a joining job goes
ahead of slower waiting ones, never ahead of one that has waited the limit, a quicker one, or a kind with no run time
yet; 0 keeps first come, first served; everyone's place is sent again after a move."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from components.queue_order import JOINED_AT, place_quicker_first


@dataclass
class Lane:
    queue: list = field(default_factory=list)


class FakeQueue:
    def __init__(self, averages: dict[str, float]):
        self.process_time_per_fn = {kind: SimpleNamespace(avg_time=t) for kind, t in averages.items()}
        self.event_queue_per_concurrency_id = {"short": Lane()}
        self.event_ids_to_events = {}
        self.broadcasts = 0

    def join(self, name: str, kind: str, joined: float | None = None):
        event = SimpleNamespace(_id=name, fn=kind, concurrency_id="short")
        if joined is not None:
            setattr(event, JOINED_AT, joined)
        self.event_ids_to_events[name] = event
        self.event_queue_per_concurrency_id["short"].queue.append(event)
        return name

    def order(self):
        return [e._id for e in self.event_queue_per_concurrency_id["short"].queue]

    def broadcast_estimations(self, lane):
        self.broadcasts += 1


def test_a_quick_job_goes_ahead_of_slower_ones_but_not_of_one_that_waited_the_limit():
    q = FakeQueue({"attribute": 12.0, "generate": 3.0})
    q.join("old-attr", "attribute", joined=0.0)  # waited 40 s at t=40: not overtaken
    q.join("gen-1", "generate", joined=35.0)
    q.join("attr-1", "attribute", joined=36.0)
    q.join("attr-2", "attribute", joined=38.0)
    moved = place_quicker_first(q, q.join("gen-2", "generate"), overtake_seconds=30, now=40.0)
    assert moved == 2 and q.order() == ["old-attr", "gen-1", "gen-2", "attr-1", "attr-2"]
    assert q.broadcasts == 1
    assert getattr(q.event_ids_to_events["gen-2"], JOINED_AT) == 40.0


def test_first_come_first_served_when_off_equal_or_unknown():
    q = FakeQueue({"attribute": 12.0, "generate": 3.0})
    q.join("attr-1", "attribute", joined=0.0)
    assert place_quicker_first(q, q.join("gen-1", "generate"), overtake_seconds=0, now=1.0) == 0
    assert place_quicker_first(q, q.join("attr-2", "attribute"), overtake_seconds=30, now=1.0) == 0
    assert place_quicker_first(q, q.join("new-kind", "sweep"), overtake_seconds=30, now=1.0) == 0
    q.join("unknown", "sweep", joined=1.0)
    assert place_quicker_first(q, q.join("gen-2", "generate"), overtake_seconds=30, now=2.0) == 0
    assert q.order() == ["attr-1", "gen-1", "attr-2", "new-kind", "unknown", "gen-2"] and q.broadcasts == 0


def test_a_job_answered_from_memory_is_not_in_the_lane_and_moves_nothing():
    q = FakeQueue({"attribute": 12.0, "generate": 3.0})
    q.join("attr-1", "attribute", joined=0.0)
    answered = SimpleNamespace(_id="hit", fn="generate", concurrency_id="short")
    q.event_ids_to_events["hit"] = answered
    assert place_quicker_first(q, "hit", overtake_seconds=30, now=1.0) == 0
    assert place_quicker_first(q, "gone", overtake_seconds=30, now=1.0) == 0
    assert q.order() == ["attr-1"]
