"""A classroom on one server, through gradio_client on the tiny model: short jobs run while a build holds the long
lane (a small load test), per-user limits refuse a second long job when it joins, a waiting job shows its place and
can be cancelled before it starts, --max-rows and the per-job time limit give one plain sentence."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.utils import Status

from components.scheduling import LONG_QUEUE, ServerLimits, current_limits, set_limits
from scripts.load_test import Mix, run_load
from tests.conftest import free_port, wait_until
from tests.factories import random_vector

LIMITS = ServerLimits(long_per_user=1, queued_per_user=2, max_rows=40)
BUILD = ("dataset", "sentiment_pairs", None, 40, 0, "grains", 3, 64, True)  # minutes on the tiny model: stopped


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from grains.models import load_model

    demo = app.build_app("tiny-random-llama", limits=LIMITS)
    port = free_port()
    app.launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    vector = tmp_path_factory.mktemp("vec") / "tiny.safetensors"
    random_vector(load_model("tiny-random-llama"), layer=1).save(vector)
    yield demo, f"http://127.0.0.1:{port}/", str(vector)
    demo.close()
    set_limits(ServerLimits())  # the process's other app servers keep one person's defaults


def long_lane(demo):
    return demo._queue.event_queue_per_concurrency_id.get(LONG_QUEUE)


def test_short_jobs_run_while_a_build_holds_the_long_lane_and_limits_apply(server):
    demo, url, vector = server
    builder = Client(url, verbose=False)
    build = builder.submit(*BUILD, api_name="/build_vector")
    try:
        assert wait_until(lambda: build.status().code == Status.PROCESSING), build.status()
        # a small load test: three users attribute and generate while the build runs (one slot per lane)
        report = run_load(url, users=3, seconds=4, builders=0, seed=1, ramp=0.5, memory_every=1.0,
                          mix=Mix(think=(0.1, 0.3), evaluate=0.0, steps=8, new_tokens=6, layer=1,
                                  vector_file=vector))
        assert not build.done(), "the build ended early: the short jobs did not overlap it"
        shorts = [r for r in report["records"] if r["kind"] in ("attribute", "generate")]
        assert len(shorts) >= 3 and not [r["error"] for r in shorts if r["error"]]
        waits = [r["wait"] for r in shorts]
        # one queue with one slot made each of these wait for the whole build (minutes)
        assert max(waits) < 10, waits
        assert report["kinds"]["generate"]["wait_p50"] < 3, report["kinds"]

        # the same user's second long job is refused when it joins, with the reason
        with pytest.raises(Exception) as refused:
            builder.predict(*BUILD, api_name="/build_vector")
        assert "one per person" in str(refused.value.response.json()["detail"])

        # another user's build waits in the long lane with its place, and can be cancelled before it starts
        other = Client(url, verbose=False)
        waiting = other.submit(*BUILD, api_name="/build_vector")
        assert wait_until(lambda: waiting.status().rank is not None and waiting.status().code == Status.IN_QUEUE)
        assert waiting.status().rank == 0 and waiting.status().queue_size >= 1
        assert waiting.cancel()
        assert wait_until(lambda: not long_lane(demo).queue), "the cancelled job stayed in the queue"
        assert build.status().code == Status.PROCESSING  # the running build was not touched
    finally:
        builder.predict(api_name="/stop_build")
        wait_until(build.done)


def test_max_rows_and_the_time_limit_say_so_in_one_sentence(server):
    demo, url, vector = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="at most 40 rows per build or evaluation"):
        client.predict("dataset", "sentiment_pairs", None, 41, 0, "grains", 3, 8, False, api_name="/build_vector")
    saved = current_limits()
    set_limits(ServerLimits(**{**saved.__dict__, "job_seconds": 0.5}))
    try:
        started = time.time()
        with pytest.raises(Exception, match="at most 0.5 s") as stopped:
            client.predict(*BUILD, api_name="/build_vector")
        assert time.time() - started < 30 and "Traceback" not in str(stopped.value)
    finally:
        set_limits(saved)
    client.predict(handle_file(vector), False, api_name="/load_vector")  # the server still serves this user
