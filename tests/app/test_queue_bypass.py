"""Answers already in the server's memory skip the queue (components.queue_bypass), through gradio_client on the tiny
model: while the short lane's only slot is held by a new question, a question answered before comes back at once and
equals the computed answer, a new one waits in the lane, and a probe never runs the model, loads one, or turns a
bad input into anything but the queued run's own message."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.utils import Status

from components.model_cache import MODELS
from components.queue_bypass import NotInMemory, answering_from_memory, forbid_model_work_in_probe
from components.queue_order import JOINED_AT
from components.result_cache import ResultCache
from components.scheduling import SHORT_QUEUE, ServerLimits, set_limits
from components.session import Session
from grains.lanes import in_lane
from tests.conftest import free_port, wait_until
from tests.factories import random_vector

MODEL = "tiny-random-llama"
PAIR = ("The soup was", " warm and good.", " cold and bad.")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from grains.models import load_model

    demo = app.build_app(MODEL, limits=ServerLimits.classroom())
    port = free_port()
    app.launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    vector = tmp_path_factory.mktemp("vec") / "tiny.safetensors"
    random_vector(load_model(MODEL), layer=1).save(vector)
    yield demo, f"http://127.0.0.1:{port}/", str(vector)
    demo.close()
    set_limits(ServerLimits())


def short_lane_waiting(demo) -> int:
    lane = demo._queue.event_queue_per_concurrency_id.get(SHORT_QUEUE)
    return len(lane.queue) if lane is not None else 0


def test_an_answer_in_memory_skips_a_busy_short_lane_and_a_new_question_waits(server):
    demo, url, vector = server
    teacher = Client(url, verbose=False)
    computed = teacher.predict(*PAIR, 8, api_name="/attribute")
    teacher.predict(handle_file(vector), False, api_name="/load_vector")
    generated = teacher.predict("Once upon a time", 1, 0.5, 5, api_name="/generate")

    lm = MODELS.peek(MODEL)
    holder = Client(url, verbose=False)
    with in_lane(SHORT_QUEUE):
        lm.lock.acquire()  # a new question's run now holds the short lane's only slot until released
    try:
        busy = holder.submit("A brand new question", " yes.", " no.", 8, api_name="/attribute")
        assert wait_until(lambda: busy.status().code == Status.PROCESSING)

        cached = Client(url, verbose=False).submit(*PAIR, 8, api_name="/attribute")
        assert wait_until(cached.done, timeout=10), "a question answered before waited behind the busy lane"
        _, scores, delta = cached.result()
        assert not busy.done()
        assert scores["tokens"] == computed[1]["tokens"] and scores["scores"] == computed[1]["scores"]
        assert delta == computed[2]

        # the same steered continuation again (load_vector itself would queue: the probe is for cached answers)
        again = teacher.submit("Once upon a time", 1, 0.5, 5, api_name="/generate")
        assert wait_until(again.done, timeout=10) and tuple(again.result()) == tuple(generated)

        new = Client(url, verbose=False).submit(*PAIR[:1], " fine.", " awful.", 8, api_name="/attribute")
        assert wait_until(lambda: new.status().code == Status.IN_QUEUE)
        assert short_lane_waiting(demo) == 1 and not new.done()
        waiting = demo._queue.event_queue_per_concurrency_id[SHORT_QUEUE].queue[0]
        assert hasattr(waiting, JOINED_AT)  # the join went through components.queue_order too
    finally:
        with in_lane(SHORT_QUEUE):
            lm.lock.release()
    assert wait_until(busy.done) and wait_until(new.done)
    assert busy.result()[1]["scores"] and new.result()[1]["scores"]


def test_a_bad_input_is_reported_by_the_queued_run_not_the_probe(server):
    _, url, _ = server
    client = Client(url, verbose=False)
    client.predict(*PAIR, 8, api_name="/attribute")
    with pytest.raises(Exception, match="IG steps") as refused:
        client.predict(*PAIR, "many", api_name="/attribute")
    assert "Traceback" not in str(refused.value) and "CacheMiss" not in str(refused.value)
    client.predict(*PAIR, 8, api_name="/attribute")  # the server still serves this user


def test_memory_only_code_never_computes_loads_or_runs_a_model():
    cache: ResultCache[int] = ResultCache(max_entries=4)
    lm = MODELS.get(MODEL)
    calls = []
    with answering_from_memory():
        with pytest.raises(NotInMemory):
            cache.get_or_compute(lm, ("q",), lambda: calls.append(1) or 1)
        with pytest.raises(NotInMemory):
            cache.get(lm, ("q",))
        with pytest.raises(NotInMemory):
            forbid_model_work_in_probe()
        from components.model_cache import session_model

        with pytest.raises(NotInMemory):
            session_model(Session(model_name="a-model-nobody-loaded"))
    assert not calls
    assert cache.get_or_compute(lm, ("q",), lambda: 7) == 7  # outside a probe: computed and kept
    with answering_from_memory():
        assert cache.get_or_compute(lm, ("q",), lambda: calls.append(1) or 0) == 7 and not calls


def test_after_the_warm_up_the_first_screens_example_is_answered_at_once(server):
    from components.session import DEFAULT_EXAMPLE
    from components.warm_up import warm_first_screen

    _, url, _ = server
    lines = warm_first_screen(MODEL, log=lambda _: None)
    assert len(lines) == 1 and "Attribute tab" in lines[0]  # no shipped vector for this model: no generation
    lm = MODELS.peek(MODEL)
    with in_lane(SHORT_QUEUE):
        lm.lock.acquire()  # nothing may be computed now: only an answer in memory can come back
    try:
        job = Client(url, verbose=False).submit(DEFAULT_EXAMPLE["prompt"], DEFAULT_EXAMPLE["chosen"],
                                               DEFAULT_EXAMPLE["rejected"], api_name="/attribute")
        assert wait_until(job.done, timeout=10), "the API's defaults asked another question than the warm-up's"
        assert job.result()[1]["steps"] > 0
    finally:
        with in_lane(SHORT_QUEUE):
            lm.lock.release()


def test_a_generation_probe_that_misses_leaves_no_count_for_stop():
    from components.actions.compare import GENERATING, counted_steps, job_key

    class Missing:
        stopped = False

        def __iter__(self):
            raise NotInMemory
            yield  # a generator, as TextStream is

    session = Session(model_name=MODEL)
    with pytest.raises(NotInMemory):
        list(counted_steps(session, Missing()))
    assert job_key(session) not in GENERATING  # Stop would otherwise report a run that never started
