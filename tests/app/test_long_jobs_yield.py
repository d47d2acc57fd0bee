"""Long jobs give the CPU to short ones: while a short job runs, a long-lane forward pass waits (at most the server's
long_yield_seconds, never past its job's deadline) and goes on as soon as the short job ends; other lanes never wait."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from components.scheduling import (
    JOB_DEADLINE,
    LONG_QUEUE,
    SHORT_JOBS,
    SHORT_QUEUE,
    ServerLimits,
    run_in_lane,
    set_limits,
    yield_to_short_jobs,
)
from grains.lanes import in_lane


@pytest.fixture
def limits():
    set_limits(ServerLimits(long_yield_seconds=5.0))
    yield
    set_limits(ServerLimits())


def timed_hook(lane: str) -> float:
    start = time.monotonic()
    with in_lane(lane):
        yield_to_short_jobs()
    return time.monotonic() - start


def running_short_job() -> tuple[threading.Event, threading.Thread]:
    """A short job that runs until the returned event is set (started, and counted, when this returns)."""
    release = threading.Event()

    def short_job():
        with SHORT_JOBS.running():
            release.wait(10)

    short = threading.Thread(target=short_job)
    short.start()
    while not SHORT_JOBS.count:
        time.sleep(0.01)
    return release, short


def test_a_long_forward_waits_while_a_short_job_runs_and_goes_on_when_it_ends(limits):
    took: list[float] = []
    done, short = running_short_job()
    waiter = threading.Thread(target=lambda: took.append(timed_hook(LONG_QUEUE)))
    waiter.start()
    time.sleep(0.6)
    assert waiter.is_alive()  # held while the short job runs
    done.set()
    short.join()
    waiter.join(5)
    assert not waiter.is_alive() and 0.5 < took[0] < 2.0  # released when it ended, not at the 5 s cap
    assert SHORT_JOBS.count == 0


def test_the_wait_is_capped_and_never_passes_the_deadline_and_other_lanes_never_wait(limits):
    with SHORT_JOBS.running():
        assert timed_hook(SHORT_QUEUE) < 0.1  # short jobs do not wait for each other here
        assert timed_hook("default") < 0.1  # library code outside the app's lanes
        set_limits(ServerLimits(long_yield_seconds=0.3))
        assert 0.25 < timed_hook(LONG_QUEUE) < 1.5  # the cap keeps a long job moving
        set_limits(ServerLimits(long_yield_seconds=5.0))
        token = JOB_DEADLINE.set((time.monotonic() + 0.3, 600.0))
        try:
            assert timed_hook(LONG_QUEUE) < 1.5  # stops waiting at the deadline (the deadline check then raises)
        finally:
            JOB_DEADLINE.reset(token)
        set_limits(ServerLimits(long_yield_seconds=0))
        assert timed_hook(LONG_QUEUE) < 0.1  # 0 turns it off
    assert timed_hook(LONG_QUEUE) < 0.1  # no short job: no wait


def test_short_handlers_are_counted_while_they_run_and_after_an_error_no_more(limits):
    seen: list[int] = []

    def handler():
        seen.append(SHORT_JOBS.count)
        raise ValueError("boom")

    def streaming():
        for i in range(2):
            seen.append(SHORT_JOBS.count)
            yield i

    with pytest.raises(ValueError):
        run_in_lane(handler, SHORT_QUEUE)()
    assert list(run_in_lane(streaming, SHORT_QUEUE)()) == [0, 1]
    run_in_lane(lambda: seen.append(SHORT_JOBS.count), LONG_QUEUE)()
    assert seen == [1, 1, 1, 0] and SHORT_JOBS.count == 0


def test_a_long_job_on_a_real_model_pauses_at_its_forward_passes(limits):
    """The hook as installed by the app (watch_models puts it on every decoder layer of every loaded model)."""
    from components.model_cache import MODELS
    from components.scheduling import watch_models
    from grains.steering import active_hook_count

    lm = MODELS.get("tiny-random-llama")
    watch_models()
    assert active_hook_count(lm) == 0  # pre-hooks only: tests and users read forward hooks as steering left on
    ids = lm.tokenizer("Q: Is the sky blue?\nA:", return_tensors="pt").input_ids
    took: list[float] = []

    def long_job():
        start = time.monotonic()
        with torch.no_grad():
            lm.model(input_ids=ids)
        took.append(time.monotonic() - start)

    release, short = running_short_job()
    long = threading.Thread(target=run_in_lane(long_job, LONG_QUEUE))
    long.start()
    time.sleep(0.5)
    assert long.is_alive()
    release.set()
    short.join()
    long.join(10)
    assert took and took[0] >= 0.4


def test_the_backward_pass_pauses_too_and_its_gradients_are_unchanged(limits):
    """Integrated gradients spend as long in the backward pass as in the forward: it has pause points too, and the
    gradient hooks that make them return the gradient untouched."""
    from components.model_cache import MODELS
    from components.scheduling import watch_models

    lm = MODELS.get("tiny-random-llama")
    ids = lm.tokenizer("Q: Is the sky blue?\nA:", return_tensors="pt").input_ids

    def gradient(lane: str):
        embeds = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with in_lane(lane):
            out = lm.model(inputs_embeds=embeds).logits[0, -1].logsumexp(-1)
        return embeds, out

    plain_embeds, plain_out = gradient("default")
    plain_out.backward()
    watch_models()
    embeds, out = gradient(LONG_QUEUE)  # forward done before the short job starts: only the backward can pause
    release, short = running_short_job()
    backward = threading.Thread(target=out.backward)
    backward.start()
    time.sleep(0.5)
    assert backward.is_alive()  # paused in the backward pass
    release.set()
    short.join()
    backward.join(10)
    assert not backward.is_alive()
    assert torch.equal(embeds.grad, plain_embeds.grad)
