"""Generation benchmarks: unsteered, steered, paired and sequential generation of the same forced length."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from benchmarks.timing import median as _median
from benchmarks.timing import timed as _timed


@contextlib.contextmanager
def _forced_length(lm: Any, tokens: int) -> Iterator[None]:
    """Make every generate call produce exactly `tokens` new tokens (EOS suppressed until then)."""
    config = lm.model.generation_config
    old = getattr(config, "min_new_tokens", None)
    config.min_new_tokens = tokens
    try:
        yield
    finally:
        config.min_new_tokens = old


def _timing_vector(lm: Any) -> Any:
    """A random unit direction at the middle layer: generation cost does not depend on the vector's values."""
    from grains.vectors import SteeringVector

    layer = lm.num_layers // 2
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(lm.hidden_size, generator=gen)
    return SteeringVector(directions={layer: direction / direction.norm()}, layer_norms={layer: 1.0},
                          model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers,
                          method="random", default_layer=layer, default_strength=0.5)


def _bench_generation(lm: Any, vector: Any, layer: int, tokens: int, rounds: int, prompt: str) -> dict[str, float]:
    """Median seconds of unsteered, steered, paired and sequential generation, interleaved round by round so a
    change in machine load hits every variant alike."""
    from grains.generation import GenerationSettings, generate_one, generate_pair

    settings = GenerationSettings(max_new_tokens=tokens)
    strength = 0.5
    runs: dict[str, Callable[[], Any]] = {
        "single": lambda: generate_one(lm, prompt, settings=settings),
        "steered": lambda: generate_one(lm, prompt, vector, layer, strength, settings),
        "pair": lambda: generate_pair(lm, prompt, vector, layer, strength, settings),
        "sequential": lambda: (generate_one(lm, prompt, settings=settings),
                               generate_one(lm, prompt, vector, layer, strength, settings)),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    generate_one(lm, prompt, settings=GenerationSettings(max_new_tokens=2))  # warm-up
    with _forced_length(lm, tokens):
        for _ in range(rounds):
            for name, fn in runs.items():
                times[name].append(_timed(fn))
    return {name: _median(values) for name, values in times.items()}
