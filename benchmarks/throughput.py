"""Throughput benchmarks: vector building (examples per minute), before and after, side by side in one run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any


def bench_build_throughput(lm: Any, pairs: list[Any], before_steps: int, after_steps: int) -> dict[str, float]:
    """Examples per minute of vector building (attribution + top-k + ablation, no cross-validation), side by side:
    "before" = `before_steps` points with one forward + backward pass per panel of the graded rule (the engine until
    2026-12-01), "after" = `after_steps` points with the panels' nodes in shared batches (the engine now)."""
    from grains.build import build_vector

    out = {}
    for name, steps, packed in (("before", before_steps, False), ("after", after_steps, True)):
        start = time.perf_counter()
        with contextlib.nullcontext() if packed else _one_pass_per_panel():
            build_vector(lm, pairs, method="grains", k=5, steps=steps, select=False)
        out[f"{name}_examples_per_minute"] = 60 * len(pairs) / (time.perf_counter() - start)
        out[f"{name}_steps"] = steps
    out["speedup"] = out["after_examples_per_minute"] / out["before_examples_per_minute"]
    return out


@contextlib.contextmanager
def _one_pass_per_panel() -> Iterator[None]:
    """The engine as it was before panels shared batches: PathIntegrator.panel_sums runs each panel on its own."""
    from grains.integration import PathIntegrator

    packed = PathIntegrator.panel_sums

    def per_panel(self: Any, rules: list) -> list:
        return [packed(self, [rule])[0] for rule in rules]

    PathIntegrator.panel_sums = per_panel  # type: ignore[method-assign]
    try:
        yield
    finally:
        PathIntegrator.panel_sums = packed  # type: ignore[method-assign]
