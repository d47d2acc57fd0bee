"""The app's generation cache: the same side-by-side run asked again (any session) comes back from memory, marked,
with the same texts as computing it; anything the texts depend on makes it a new run (greedy decoding ignores the
seed); a streamed run closed before its end is not kept."""

from __future__ import annotations

import pytest

from components.actions.compare import generate_texts, stream_texts
from components.generation_cache import GENERATIONS
from components.model_cache import MODELS
from components.session import Session
from components.views.compare import generation_summary
from grains.decoding import GenerationSettings
from grains.generation import generate_pair
from grains.steering import Steering
from tests.factories import random_vector

MODEL = "tiny-random-llama"
PROMPT = "The weather today"


@pytest.fixture(autouse=True)
def empty_cache():
    GENERATIONS.clear()
    yield
    GENERATIONS.clear()


@pytest.fixture(scope="module")
def steering():
    lm = MODELS.get(MODEL)
    return Steering.create(lm, random_vector(lm, layer=1, seed=3), 1, 2.0)


def test_a_second_session_gets_the_same_texts_from_memory(steering):
    settings = GenerationSettings(max_new_tokens=6)
    first = generate_texts(Session(MODEL), PROMPT, None, steering, settings)
    hits = GENERATIONS.hits
    second = generate_texts(Session(MODEL), PROMPT, None, steering, settings)
    assert GENERATIONS.hits == hits + 1
    plain = generate_pair(MODELS.get(MODEL), PROMPT, steering, settings=settings)
    assert (second.unsteered, second.steered) == (first.unsteered, first.steered) == (plain.unsteered, plain.steered)
    assert first.unsteered != first.steered  # the vector moves the tiny model: a cache mixing them up would show

    stream = stream_texts(Session(MODEL), PROMPT, None, steering, settings)
    steps = list(stream)
    assert steps == [(first.unsteered, first.steered)] and stream.finished.cached  # one step, at once
    assert stream.tokens(len(steps)) == (None, True)  # stored by a call that did not stream: no count is made up
    again = stream_texts(Session(MODEL), PROMPT + " again", None, steering, settings)
    seen = len(list(again))
    assert again.tokens(seen) == (seen, False)
    replay = stream_texts(Session(MODEL), PROMPT + " again", None, steering, settings)
    assert len(list(replay)) == 1 and replay.tokens(1) == (seen, True)  # one step from memory, the run's own count
    assert "served from this server's memory" in generation_summary(6, 0.0, settings, False, cached=True)
    assert "served from this server's memory" not in generation_summary(6, 0.0, settings, False)
    # kept by the API's unstreamed run, whose token count was not kept: no count is made up
    assert generation_summary(None, 0.0, settings, False, cached=True).startswith("Computed earlier; served")


@pytest.mark.parametrize("change", [
    {"strength": 1.0}, {"settings": {"max_new_tokens": 5}}, {"settings": {"stop": ("\n",)}},
    {"settings": {"do_sample": True}}, {"prompt": "The weather tomorrow"}, {"prompt_format": "qa"},
    {"steering": None}])
def test_anything_the_texts_depend_on_is_a_new_run(steering, change):
    def run(**kw):
        options = {"max_new_tokens": 6, **kw.get("settings", {})}
        st = kw.get("steering", steering) if "steering" in kw else steering
        if "strength" in kw:
            st = steering.at(MODELS.get(MODEL), strength=kw["strength"])
        args = (Session(MODEL), kw.get("prompt", PROMPT), None, st, GenerationSettings(**options),
                kw.get("prompt_format"))
        if st is None:  # the Compare tab without a vector: two unsteered rows, streamed
            list(stream_texts(*args))
        else:
            generate_texts(*args)

    run()
    misses = GENERATIONS.misses
    run(**change)
    assert GENERATIONS.misses == misses + 1 and len(GENERATIONS) == 2


def test_greedy_ignores_the_seed_and_sampling_does_not(steering):
    for sample in (False, True):
        GENERATIONS.clear()
        for seed in (0, 1):
            generate_texts(Session(MODEL), PROMPT, None, steering,
                           GenerationSettings(max_new_tokens=4, do_sample=sample, seed=seed))
        assert len(GENERATIONS) == (2 if sample else 1)


def test_a_stream_closed_early_is_not_kept(steering):
    stream = stream_texts(Session(MODEL), PROMPT, None, steering, GenerationSettings(max_new_tokens=8))
    steps = iter(stream)
    next(steps)
    steps.close()  # Stop on the page closes the handler's generator
    assert stream.finished is None and len(GENERATIONS) == 0
    whole = stream_texts(Session(MODEL), PROMPT, None, steering, GenerationSettings(max_new_tokens=8))
    assert len(list(whole)) >= 1 and not whole.finished.cached and len(GENERATIONS) == 1
