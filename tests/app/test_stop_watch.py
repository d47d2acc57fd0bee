"""The Steer tab's Stop watch: after Stop, the page polls outside the queue and shows how the build ended, so a
build reply lost on the queue's event stream cannot leave the page at "Stopping…"."""

from __future__ import annotations

import gradio as gr
import pytest

from components.session import Session
from components.steering_panel import build_ended_status

MODEL = "tiny-random-llama"


def event_fn(demo: gr.Blocks, name: str):
    """The app's first event function called `name`."""
    found = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == name]
    assert len(found) >= 1, name
    return found[0]


def test_the_watch_waits_while_the_build_runs_then_shows_how_it_ended():
    session = Session(MODEL)
    session.build_pending, session.build_status = True, ""
    status, timer = build_ended_status(session)
    assert status == gr.update() and timer == gr.update()  # still running: nothing changes, keep polling
    session.build_pending, session.build_status = False, "<div>Stopped after 3/12; the previous vector is kept.</div>"
    status, timer = build_ended_status(session)
    assert "Stopped after 3/12" in status
    assert isinstance(timer, gr.Timer) and timer.active is False  # the watch ends


@pytest.fixture(scope="module")
def demo() -> gr.Blocks:
    import app

    return app.build_app(MODEL, preload=True)


def test_stop_arms_the_watch_and_a_stopped_build_leaves_its_status_on_the_session(demo):
    """Stop outside the queue, the watch's tick outside the queue, and the build (its event function, called as
    Gradio would) storing its closing status where the watch reads it."""
    cancel, tick, build, arm = (event_fn(demo, n) for n in ("request_cancel", "build_ended_status",
                                                           "build_then_disarm", "arm"))
    assert cancel.queue is False and tick.queue is False and [t[1] for t in tick.targets] == ["tick"]
    ticks = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "build_ended_status"]
    assert len(ticks) == 2 and all(fn.queue is False for fn in ticks)  # the Steer tab and the hallucination re-check

    session = Session(MODEL)
    assert "No build is running" in cancel.fn(session)[0]
    arm.fn(session)
    session.build_started = True
    note, timer = cancel.fn(session)  # Stop while it runs: "Stopping…" and the watch starts
    assert "Stopping after the current step" in note and timer.active is True

    assert session.cancel is True  # so the build meets the stop flag at its first check
    build_args = [session, "dataset", "truthfulqa", None, 4, 0, "grains", 5, 4, "sequence", True, True, False, True,
                  None]  # source, dataset, file, rows, first row, method, k, steps, target, ..., prompt format
    outputs = build.fn(*build_args)
    assert "Stopped" in outputs[-1] and "previous vector is kept" in outputs[-1]
    assert session.build_pending is False and session.build_status == outputs[-1]
    status, timer = tick.fn(session)
    assert status == outputs[-1] and timer.active is False
