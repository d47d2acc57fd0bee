"""The app's model cache: shared loaded models, dropped least recently used beyond a count or a memory budget."""

from __future__ import annotations

import torch

from components.model_cache import ModelCache, weight_bytes


class FakeModel:
    """A stand-in LoadedModel whose weights take `megabytes` MiB (float32)."""

    def __init__(self, megabytes: int):
        self.model = torch.nn.Linear(megabytes * 2**18, 1, bias=False)  # 2**18 float32 weights = 1 MiB


def cache_of(sizes: dict[str, int], **kwargs) -> tuple[ModelCache, list[str]]:
    loads: list[str] = []

    def loader(name: str) -> FakeModel:
        loads.append(name)
        return FakeModel(sizes[name])

    return ModelCache(loader=loader, **kwargs), loads


def test_weight_bytes_counts_parameters_and_ignores_anything_else():
    assert weight_bytes(FakeModel(3)) == 3 * 2**20
    assert weight_bytes(object()) == 0


def test_small_models_do_not_push_a_large_one_out():
    cache, loads = cache_of({"large": 40, "tiny-a": 1, "tiny-b": 1, "tiny-c": 1}, capacity=4, max_bytes=50 * 2**20)
    large = cache.get("large")
    for name in ("tiny-a", "tiny-b", "tiny-c"):
        cache.get(name)
    assert cache.get("large") is large and loads.count("large") == 1
    assert cache.loaded() == ["tiny-a", "tiny-b", "tiny-c", "large"]


def test_the_budget_drops_the_least_recently_used_but_keeps_the_newest():
    cache, loads = cache_of({"a": 30, "b": 30, "huge": 80}, capacity=4, max_bytes=64 * 2**20)
    cache.get("a")
    cache.get("b")  # 60 MiB: both fit
    cache.get("a")  # a is now the most recently used
    cache.get("huge")  # over the budget even alone: it stays, everything older goes
    assert cache.loaded() == ["huge"]
    cache.get("b")
    assert cache.loaded() == ["b"] and loads == ["a", "b", "huge", "b"]


def test_the_count_still_limits_many_small_models():
    cache, _ = cache_of({str(i): 1 for i in range(6)}, capacity=3, max_bytes=2**40)
    for i in range(6):
        cache.get(str(i))
    assert cache.loaded() == ["3", "4", "5"]
