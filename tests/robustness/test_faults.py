"""Faults: an exception inside steered generation, a cancelled stream, a cancelled build, an out-of-memory error in IG
or generation, and a failed model load leave nothing behind: no hook on the model, the same unsteered output, the
previous model kept, and the next call works."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from grains.errors import Cancelled, ModelLoadError, ResourceError
from tests.robustness.bad_inputs import CHOSEN, PROMPT, REJECTED, TEXT_MODEL, valid_vector

FIXED_PROMPT = "The weather today is"


@pytest.fixture(scope="module")
def lm() -> Any:
    from grains.models import load_model

    return load_model(TEXT_MODEL)


@pytest.fixture(scope="module")
def before(lm) -> str:
    from grains.generation import GenerationSettings, generate_one

    return generate_one(lm, FIXED_PROMPT, settings=GenerationSettings(max_new_tokens=6))


def assert_clean(lm: Any, before: str) -> None:
    """No hook left behind, and the unsteered continuation is byte-identical to the one before the fault."""
    from grains.generation import GenerationSettings, generate_one
    from grains.steering import active_hook_count

    assert active_hook_count(lm) == 0
    assert generate_one(lm, FIXED_PROMPT, settings=GenerationSettings(max_new_tokens=6)) == before


class Boom(RuntimeError):
    pass


def raise_at_call(lm: Any, n: int, seen: list[int]):
    """A hook on the output layer (not a decoder layer) that raises at its n-th call, recording how many steering
    hooks were active then (proof the fault hit mid-steering)."""
    from grains.steering import active_hook_count

    calls = {"n": 0}

    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            seen.append(active_hook_count(lm))
            raise Boom(f"fault at decoding step {n}")
        return output

    return lm.model.get_output_embeddings().register_forward_hook(hook)


def test_exception_inside_steered_generation(lm, before):
    from grains.generation import GenerationSettings, generate_pair

    seen: list[int] = []
    handle = raise_at_call(lm, 3, seen)
    try:
        with pytest.raises(Boom):
            generate_pair(lm, "Hello there", valid_vector(), layer=[1, 2], strength=2.0,
                          settings=GenerationSettings(max_new_tokens=8))
    finally:
        handle.remove()
    assert seen == [2], "the fault must hit while both steering hooks are on"
    assert_clean(lm, before)


def test_exception_inside_a_steered_stream(lm, before):
    from grains.generation import GenerationSettings, stream_pair

    seen: list[int] = []
    handle = raise_at_call(lm, 3, seen)
    got = []
    try:
        with pytest.raises(Boom):
            for item in stream_pair(lm, "Hello there", valid_vector(), layer=1, strength=2.0,
                                    settings=GenerationSettings(max_new_tokens=8)):
                got.append(item)
    finally:
        handle.remove()
    assert seen == [1] and len(got) == 2  # two tokens streamed, the third step failed
    assert_clean(lm, before)


def test_cancelled_stream(lm, before):
    from grains.generation import GenerationSettings, stream_pair
    from grains.steering import active_hook_count

    stream = stream_pair(lm, "Hello there", valid_vector(), layer=1, strength=2.0,
                         settings=GenerationSettings(max_new_tokens=200))
    first = [next(stream), next(stream)]
    assert active_hook_count(lm) == 1  # steering is on while the stream runs
    stream.close()  # what Gradio does when the user presses Stop or leaves
    assert len(first) == 2
    assert_clean(lm, before)
    # and the next stream runs to its end
    items = list(stream_pair(lm, "Hello there", valid_vector(), layer=1, strength=2.0,
                             settings=GenerationSettings(max_new_tokens=4)))
    assert 1 <= len(items) <= 4
    assert_clean(lm, before)


def test_interrupt_inside_the_steering_context(lm, before):
    from grains.steering import active_hook_count, steer

    with pytest.raises(KeyboardInterrupt):
        with steer(lm, valid_vector(), layers=[0, 3], strength=1.0):
            assert active_hook_count(lm) == 2
            raise KeyboardInterrupt
    assert_clean(lm, before)


def test_cancelled_build(lm, before):
    from grains.build import build_vector
    from grains.data import PreferenceExample

    examples = [PreferenceExample(f"Q: Is {n} even?\nA:", " Yes", " No") for n in range(4)]
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 6  # somewhere in cross-validation, after the deltas are collected

    with pytest.raises(Cancelled):
        build_vector(lm, examples, method="caa", k=2, steps=2, folds=2, layers=[1, 2], strengths=[0, 1],
                     should_stop=should_stop)
    assert calls["n"] > 6
    assert_clean(lm, before)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"),
                                   MemoryError()], ids=["cuda-oom", "cpu-alloc", "memory-error"])
def test_out_of_memory_in_ig(lm, before, monkeypatch, error):
    from grains.attribution import ContrastiveObjective, attribute

    # one Gauss-Legendre panel, so a chunk of 4 really asks for 4 points at once
    reference = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4, points="gauss-legendre", chunk_size=2)
    real_call = ContrastiveObjective.__call__

    def big_batches_fail(self: Any, emb_plus: torch.Tensor, emb_minus: torch.Tensor) -> torch.Tensor:
        if emb_plus.shape[0] > 2:  # more than two interpolation points at once "do not fit"
            raise error
        return real_call(self, emb_plus, emb_minus)

    monkeypatch.setattr(ContrastiveObjective, "__call__", big_batches_fail)
    with pytest.raises(ResourceError) as info:
        attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4, points="gauss-legendre", chunk_size=4)
    message = str(info.value)
    assert "out of memory" in message.lower() and "fewer IG steps" in message and "smaller chunk" in message
    # the next attribution works: with a smaller chunk at once, and normally after the fault is gone
    small = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4, points="gauss-legendre", chunk_size=2)
    assert small.scores == pytest.approx(reference.scores, abs=1e-5)
    monkeypatch.setattr(ContrastiveObjective, "__call__", real_call)
    again = attribute(lm, PROMPT, CHOSEN, REJECTED, steps=4, points="gauss-legendre", chunk_size=4)
    assert again.scores == pytest.approx(reference.scores, abs=1e-4)
    assert_clean(lm, before)


def test_out_of_memory_in_steered_generation(lm, before):
    from grains.generation import GenerationSettings, generate_pair

    def oom(module: torch.nn.Module, args: Any, output: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory.")

    handle = lm.model.get_output_embeddings().register_forward_hook(oom)
    try:
        with pytest.raises(ResourceError, match="fewer new tokens"):
            generate_pair(lm, "Hello there", valid_vector(), layer=1, strength=1.0,
                          settings=GenerationSettings(max_new_tokens=4))
    finally:
        handle.remove()
    assert_clean(lm, before)


def test_a_failed_load_keeps_the_cached_models():
    from components.model_cache import ModelCache

    loaded = {"good": object()}

    def loader(name: str) -> Any:
        if name not in loaded:
            raise ModelLoadError(f"Could not load {name!r}.")
        return loaded[name]

    cache = ModelCache(capacity=2, loader=loader)
    good = cache.get("good")
    with pytest.raises(ModelLoadError):
        cache.get("broken")
    assert cache.loaded() == ["good"] and cache.get("good") is good


def test_a_failed_load_keeps_the_sessions_model_in_the_app(app_server):
    """App level, through the API: the session keeps its model and vector after a load fails."""
    pytest.importorskip("gradio_client")
    pytest.importorskip("app")
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    c = Client(app_server(TEXT_MODEL), verbose=False)
    c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
    c.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    vector_before = c.predict(api_name="/vector_info")
    unsteered, _ = c.predict(FIXED_PROMPT, 1, 0.0, 4, None, api_name="/generate")
    for bad in ("/no/such/checkpoint", "no-such-preset"):
        with pytest.raises(AppError):
            c.predict(bad, api_name="/load_model")
    assert c.predict(api_name="/vector_info") == vector_before
    again, _ = c.predict(FIXED_PROMPT, 1, 0.0, 4, None, api_name="/generate")
    assert again == unsteered
