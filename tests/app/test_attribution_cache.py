"""The app's attribution cache: the same question asked again (any session) is answered from memory, a copy marked
cached; anything the result depends on (settings, format, texts, image, vector numbers, strength, the model object)
makes it a new question; two sessions asking at once compute once."""

from __future__ import annotations

import threading

import pytest

from components.actions.attribution import run_attribution, run_steered_attribution, steered_json
from components.attribution_cache import ATTRIBUTIONS, AttributionCache
from components.model_cache import MODELS
from components.session import Session
from components.views.attribution import summary_html
from grains.steering import Steering
from tests.factories import random_vector

MODEL = "tiny-random-llama"
EXAMPLE = ("Is the sky blue?", " Yes", " No")


@pytest.fixture(autouse=True)
def empty_cache():
    ATTRIBUTIONS.clear()
    yield
    ATTRIBUTIONS.clear()


def attribute(session: Session, **settings):
    args = {"steps": 4, "target": "sequence", "baseline": "zero", "points": "graded", "tolerance": 5.0,
            "prompt_format": None, **settings}
    return run_attribution(session, *EXAMPLE, None, args["steps"], args["target"], args["baseline"],
                           args["points"], args["tolerance"], args["prompt_format"])


def test_a_second_session_gets_a_marked_copy_of_the_same_result():
    first = attribute(Session(MODEL))
    hits = ATTRIBUTIONS.hits
    second_session = Session(MODEL)
    second = attribute(second_session)
    assert ATTRIBUTIONS.hits == hits + 1
    assert second.scores == first.scores and second.delta == first.delta and second.seconds == first.seconds
    assert second is not first and second.extra.get("cached") is True and "cached" not in first.extra
    assert second_session.attribution is second and second_session.example is not None
    assert "served from this server's memory" in summary_html(second)
    assert "served from this server's memory" not in summary_html(first)
    second.scores[0] = 1e9  # a caller's copy is its own
    assert attribute(Session(MODEL)).scores[0] == first.scores[0]


@pytest.mark.parametrize("change", [{"steps": 6}, {"tolerance": 10.0}, {"target": "last"}, {"baseline": "pad"},
                                    {"points": "gauss-legendre"}, {"prompt_format": "qa"}])
def test_any_other_setting_is_a_new_question(change):
    attribute(Session(MODEL))
    misses = ATTRIBUTIONS.misses
    attribute(Session(MODEL), **change)
    assert ATTRIBUTIONS.misses == misses + 1 and len(ATTRIBUTIONS) == 2


def test_steered_results_key_on_the_vector_numbers_and_the_setting():
    session = Session(MODEL)
    attribute(session)
    lm = MODELS.get(MODEL)
    a, b = random_vector(lm, seed=1), random_vector(lm, seed=2)
    at = {"layer": 1, "strength": 1.0}
    first, _ = run_steered_attribution(session, Steering.create(lm, a, at["layer"], at["strength"]))
    again, diff = run_steered_attribution(Session(MODEL, inputs=dict(session.inputs), attribution=session.attribution),
                                       Steering.create(lm, a, at["layer"], at["strength"]))
    assert again.extra.get("cached") is True and again.scores == first.scores
    assert steered_json(session.attribution, again, diff)["steered"]["cached"] is True
    for other in (Steering.create(lm, b, 1, 1.0), Steering.create(lm, a, 1, 2.0), Steering.create(lm, a, 2, 1.0),
                  Steering.create(lm, a, 1, 1.0).with_normalize(False)):
        result, _ = run_steered_attribution(session, other)
        assert "cached" not in result.extra, other.describe()


def test_a_reloaded_model_is_a_new_question():
    cache = AttributionCache()
    session = Session(MODEL)
    attribute(session)
    lm = MODELS.get(MODEL)
    key = cache.key(lm, session.inputs)
    cache.put(lm, key, session.attribution)
    assert cache.get(lm, key) is not None

    class Reloaded:  # same name and settings, another model object
        model = object.__new__(type(lm.model))

    assert cache.get(Reloaded, key) is None


def test_the_oldest_result_goes_first():
    cache = AttributionCache(max_entries=2)
    session = Session(MODEL)
    attribute(session)
    lm = MODELS.get(MODEL)
    keys = [("q", i) for i in range(3)]
    for key in keys[:2]:
        cache.put(lm, key, session.attribution)
    assert cache.get(lm, keys[0]) is not None  # keys[0] is now the most recently used
    cache.put(lm, keys[2], session.attribution)
    assert len(cache) == 2 and cache.get(lm, keys[1]) is None and cache.get(lm, keys[0]) is not None


def test_two_sessions_asking_at_once_compute_once():
    cache = AttributionCache()
    session = Session(MODEL)
    attribute(session)
    lm = MODELS.get(MODEL)
    calls, started = [], threading.Barrier(2)

    def compute():
        calls.append(1)
        return session.attribution

    results = []

    def ask():
        started.wait()
        results.append(cache.get_or_compute(lm, ("same",), compute))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2
    assert sum(bool(r.extra.get("cached")) for r in results) == 1
