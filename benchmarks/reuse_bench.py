"""What reusing unchanged work buys, before and after side by side in one run: cross-validation cells per second,
TruthfulQA questions per second (unsteered + steered evaluation) and the whole build with nested cross-validation.

"Before" is the plain path the library keeps for VLMs (every steered cell a full forward of every layer, evaluation
one question at a time with its prompt in a KV cache, KL on neutral prompts from full forwards) with strict fp32
products, forced with `plain_paths()`; "after" is the default: hidden states below the steered layer kept
(grains.prefix_cache), questions many per pass (grains.item_scoring), and fp32 products through oneDNN's fast route
where the model's check adopted it (grains.matmul_precision). Each pair of figures also reports how far apart the
two paths' numbers are, and the process CPU seconds beside the wall seconds: on a shared machine with one thread the
CPU-time ratio is the steadier one (`cpu_speedup`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def plain_paths() -> Iterator[None]:
    """Inside, build, evaluation and KL take the plain path (no kept hidden states, no batching across questions) with
    strict fp32 products."""
    import grains.build as build
    import grains.evaluation as evaluation
    import grains.side_effects as side_effects
    from grains.matmul_precision import strict_fp32

    saved = (build.pair_rows_supported, evaluation.batchable, side_effects.supports)
    build.pair_rows_supported = lambda lm, pairs: False  # type: ignore[assignment]
    evaluation.batchable = lambda lm, rows, kind: False  # type: ignore[assignment]
    side_effects.supports = lambda lm: False  # type: ignore[assignment]
    try:
        with strict_fp32():
            yield
    finally:
        build.pair_rows_supported, evaluation.batchable, side_effects.supports = saved


def _caa_vector(lm: Any, pairs: list[Any]) -> Any:
    from grains.build import build_vector

    return build_vector(lm, pairs, method="caa", select=False, report_side_effects=False).vector


def bench_cv_cells(lm: Any, pairs: list[Any], layers: list[int], strengths: list[float]) -> dict[str, Any]:
    """Cross-validation cells per second through build's score callback: the unsteered margins once, then every
    (layer, strength) cell on every pair, plain path then kept hidden states.

    Args:
        lm: the model.
        pairs: preference pairs.
        layers: the cells' layers.
        strengths: the cells' strengths.

    Returns:
        {"before_cells_per_second", "after_cells_per_second", "speedup", "max_abs_diff", "cells", "pairs"}.
    """
    from grains.build import _margin_scorer

    vector = _caa_vector(lm, pairs)
    cells = [(la, s) for la in layers for s in strengths]
    every = list(range(len(pairs)))
    out: dict[str, Any] = {"cells": len(cells), "pairs": len(pairs)}
    margins: dict[str, list[float]] = {}
    for name in ("before", "after"):
        with plain_paths() if name == "before" else contextlib.nullcontext():
            start, cpu = time.perf_counter(), time.process_time()
            score, _ = _margin_scorer(lm, pairs, layers, True)
            score(None, None, 0.0, every)
            got: list[float] = []
            for layer, strength in cells:
                got += score(vector, layer, strength, every)
            out[f"{name}_seconds"] = time.perf_counter() - start
            out[f"{name}_cpu_seconds"] = time.process_time() - cpu
        out[f"{name}_cells_per_second"] = len(cells) / out[f"{name}_seconds"]
        margins[name] = got
    out["speedup"] = out["after_cells_per_second"] / out["before_cells_per_second"]
    out["cpu_speedup"] = out["before_cpu_seconds"] / out["after_cpu_seconds"]
    out["max_abs_diff"] = max(abs(a - b) for a, b in zip(margins["before"], margins["after"]))
    return out


def bench_eval(lm: Any, questions: list[Any], vector: Any, layer: int, strength: float) -> dict[str, Any]:
    """TruthfulQA questions per second of `evaluate` with a vector (an unsteered and a steered pass), before/after.

    Returns:
        {"before_questions_per_second", "after_questions_per_second", "speedup", "max_abs_diff_mc2", ...}.
    """
    from grains.evaluation import evaluate

    out: dict[str, Any] = {"questions": len(questions), "layer": layer, "strength": strength}
    reports = {}
    for name in ("before", "after"):
        with plain_paths() if name == "before" else contextlib.nullcontext():
            start, cpu = time.perf_counter(), time.process_time()
            reports[name] = evaluate(lm, questions, "truthfulqa", vector, layer=layer, strength=strength)
            out[f"{name}_seconds"] = time.perf_counter() - start
            out[f"{name}_cpu_seconds"] = time.process_time() - cpu
        out[f"{name}_questions_per_second"] = len(questions) / out[f"{name}_seconds"]
    out["speedup"] = out["after_questions_per_second"] / out["before_questions_per_second"]
    out["cpu_speedup"] = out["before_cpu_seconds"] / out["after_cpu_seconds"]
    before, after = reports["before"].to_dict(), reports["after"].to_dict()
    out["max_abs_diff_mc2"] = max(abs(before[k] - after[k]) for k in ("mc2", "mc2_unsteered", "mc1", "mc1_unsteered"))
    return out


def bench_build_selection(lm: Any, pairs: list[Any], method: str = "grains") -> dict[str, Any]:
    """The whole build with nested cross-validation and the KL budget, before/after, in minutes and examples per
    minute, with each run's phase timings and whether both chose the same cell.

    Returns:
        {"before_minutes", "after_minutes", "speedup", "same_choice", "before_timings", "after_timings", ...}.
    """
    from grains.build import build_vector

    out: dict[str, Any] = {"examples": len(pairs), "method": method}
    choice = {}
    for name in ("before", "after"):
        with plain_paths() if name == "before" else contextlib.nullcontext():
            start, cpu = time.perf_counter(), time.process_time()
            built = build_vector(lm, pairs, method=method)
            seconds = time.perf_counter() - start
            out[f"{name}_cpu_minutes"] = (time.process_time() - cpu) / 60
        out[f"{name}_minutes"] = seconds / 60
        out[f"{name}_examples_per_minute"] = len(pairs) / (seconds / 60)
        out[f"{name}_timings"] = {k: round(v, 1) for k, v in built.timings.items()}
        choice[name] = (built.vector.default_layer, built.vector.default_strength)
    out["speedup"] = out["before_minutes"] / out["after_minutes"]
    out["cpu_speedup"] = out["before_cpu_minutes"] / out["after_cpu_minutes"]
    out["same_choice"] = choice["before"] == choice["after"]
    out["choice"] = {"layer": choice["after"][0], "strength": choice["after"][1]}
    return out


def main() -> int:
    """`python -m benchmarks.reuse_bench --model gemma-3-270m`: the three before/after figures alone, as JSON."""
    import argparse
    import json

    from grains.build import DEFAULT_STRENGTHS, default_layers
    from grains.data import BUILTIN_DATASETS, load_truthfulqa, truthfulqa_to_pairs
    from grains.models import load_model

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--questions", type=int, default=20, help="0 skips the evaluation figure")
    ap.add_argument("--build-rows", type=int, default=16, help="0 skips the build figure")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lm = load_model(args.model)
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=max(args.pairs, args.questions,
                                                                           args.build_rows))
    layers = default_layers(lm.num_layers)
    result: dict[str, Any] = {"model": args.model, "threads": __import__("torch").get_num_threads()}

    def save() -> None:
        text = json.dumps(result, indent=2)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write(text + "\n")
        print(text, flush=True)

    result["cv_cells"] = bench_cv_cells(lm, truthfulqa_to_pairs(questions[: args.pairs]), layers,
                                        list(DEFAULT_STRENGTHS)[:2])
    save()
    if args.questions:
        from benchmarks.generation_bench import _timing_vector

        vector = _timing_vector(lm)
        result["eval_reuse"] = bench_eval(lm, questions[: args.questions], vector, vector.default_layer, 0.5)
        save()
    if args.build_rows:
        result["build_selection"] = bench_build_selection(lm, truthfulqa_to_pairs(questions[: args.build_rows]))
        save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
