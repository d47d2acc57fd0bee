"""`python -m grains bench`: how fast and how lean the engine is, measured against the reference way of doing it.

Everything is measured on the same machine in one run, so ratios are meaningful even on a shared, noisy machine:

- IG speed and agreement: the engine's batched contrastive IG (grains.attribution) against the step-by-step loop
  of the GrAInS reference scripts (benchmarks/reference.py), on the same example, points, weights and target.
- IG memory: each implementation in a fresh subprocess that loads the model, records its RSS, resets the peak
  counter and runs one IG; extra = peak RSS - RSS after load.
- Generation: one unsteered row, one steered row (hook overhead), both rows in one batched call (pair) and two
  separate calls (sequential), all with the same forced number of new tokens.
- IG time against prompt length (log-log slope), vector building and evaluation throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.arguments import add_bench_arguments  # noqa: F401 - re-exported for the CLI and tests
from benchmarks.generation_bench import _bench_generation, _timing_vector
from benchmarks.ig_bench import (  # noqa: F401 - re-exported (tests, time_to_converged)
    IG_CHOSEN,
    IG_PROMPT,
    IG_REJECTED,
    _bench_scaling,
    bench_time_to_converged,
    bench_time_to_converged_many,
    captum_layer_ig,
    scaling_exponent,
)
from benchmarks.memory_probe import _run_probe
from benchmarks.report import TARGETS, _targets, format_table  # noqa: F401 - re-exported
from benchmarks.reuse_bench import bench_build_selection, bench_cv_cells, bench_eval
from benchmarks.throughput import bench_build_throughput
from benchmarks.timing import Progress
from benchmarks.timing import median as _median


def _settings(quick: bool, steps: int | None) -> dict[str, Any]:
    """Sizes of every measurement. Quick keeps the reference loop short (it costs ~4 s per point on 2 cores)."""
    if quick:
        out = {"ig_steps": 8, "ig_order": "OR", "reference_steps": 20, "captum_steps": 50,
               "gen_tokens": 16, "gen_rounds": 2, "scaling_steps": 2,
               "scaling_rounds": 1, "build_examples": 1, "build_steps": 16, "eval_questions": 2,
               "reuse_pairs": 3, "reuse_layers": 1, "reuse_questions": 2, "build_selection_rows": 0}
    else:
        out = {"ig_steps": 20, "ig_order": "ORRO", "reference_steps": 20, "captum_steps": 50,
               "gen_tokens": 32, "gen_rounds": 5, "scaling_steps": 6,
               "scaling_rounds": 2, "build_examples": 4, "build_steps": 16, "eval_questions": 10,
               "reuse_pairs": 16, "reuse_layers": 8, "reuse_questions": 20, "build_selection_rows": 16}
    if steps is not None:
        out["ig_steps"] = int(steps)
    out["quick"] = quick
    return out


def _machine(lm: Any, model: str) -> dict[str, Any]:
    return {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "device": str(lm.device),
            "dtype": str(lm.dtype).replace("torch.", ""), "torch": torch.__version__,
            "transformers": _version("transformers"), "python": platform.python_version(),
            "platform": platform.platform(), "model": model}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


class _Sections:
    """Progress messages plus the wall time of each benchmark section."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(message)

    @contextlib.contextmanager
    def __call__(self, name: str, message: str) -> Iterator[None]:
        self.say(message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)


ORDER = ["machine", "ig_seconds", "ig_reference_seconds", "ig_speedup", "ig_max_rel_diff", "ig_peak_extra_mb",
         "ig_reference_peak_extra_mb", "ig_memory_ratio", "single_seconds", "pair_seconds", "sequential_seconds",
         "pair_ratio", "hook_overhead", "build_seconds_per_example", "eval_seconds_per_question", "scaling",
         "ig_scaling_exponent"]


def run_bench(model: str = "gemma-3-270m", quick: bool = False, progress: Progress | None = print,
              device: str | None = None, dtype: str | None = None, steps: int | None = None,
              chunk_size: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run every benchmark and return one JSON-ready dict (keys documented in benchmarks/README.md).

    `chunk_size` forces the engine's IG chunk (interpolation points per batch) in the speed/memory comparison;
    by default the engine chooses it from free memory, as it does for users. `threads` sets torch's intra-op
    threads here and in the subprocesses (default: torch's choice, one per core).
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_bench(model, quick, progress, device, dtype, steps, chunk_size, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(model: str, quick: bool, progress: Progress | None, device: str | None, dtype: str | None,
               steps: int | None, chunk_size: int | None, threads: int | None) -> dict[str, Any]:
    from grains.data import BUILTIN_DATASETS, load_truthfulqa, truthfulqa_to_pairs
    from grains.models import load_model

    cfg = _settings(quick, steps)
    cfg["ig_chunk_size_forced"] = chunk_size
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.perf_counter()
    section = _Sections(progress)
    notes: list[str] = []
    result: dict[str, Any] = {}

    # IG speed, agreement and memory: each implementation in fresh processes, in an ABBA order (ours, reference,
    # reference, ours) so a steady change of machine load during the run hits both medians alike.
    spec = {"model": model, "device": device, "dtype": dtype, "steps": cfg["ig_steps"], "chunk_size": chunk_size,
            "threads": threads}
    probes: dict[str, list[dict[str, Any]]] = {"ours": [], "reference": []}
    with section("ig", f"IG, {cfg['ig_steps']} points, fresh processes in the order {cfg['ig_order']} "
                       "(O = ours, R = reference step-by-step loop) ..."):
        for letter in cfg["ig_order"]:
            impl = "ours" if letter == "O" else "reference"
            probe = _run_probe({**spec, "impl": impl})
            probes[impl].append(probe)
            section.say(f"  {impl}: {probe['seconds']:.2f} s (first run {probe['first_seconds']:.2f} s), "
                        f"extra {probe['extra_mb']:.0f} MB"
                        + (f", chunk {probe['chunk_size']}" if impl == "ours" else ""))
    ours, ref = probes["ours"], probes["reference"]
    a, b = torch.tensor(ours[0]["scores"]), torch.tensor(ref[0]["scores"])
    result["ig_seconds"] = _median([p["seconds"] for p in ours])
    result["ig_reference_seconds"] = _median([p["seconds"] for p in ref])
    result["ig_speedup"] = result["ig_reference_seconds"] / result["ig_seconds"]
    result["ig_max_rel_diff"] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    result["ig_peak_extra_mb"] = _median([p["extra_mb"] for p in ours])
    result["ig_reference_peak_extra_mb"] = _median([p["extra_mb"] for p in ref])
    result["ig_memory_ratio"] = result["ig_peak_extra_mb"] / max(result["ig_reference_peak_extra_mb"], 1e-9)
    result["ig_detail"] = {
        "steps": cfg["ig_steps"], "chunk_size": ours[0]["chunk_size"], "order": cfg["ig_order"],
        "seconds": [p["seconds"] for p in ours], "reference_seconds": [p["seconds"] for p in ref],
        "first_run_seconds": [p["first_seconds"] for p in ours],
        "reference_first_run_seconds": [p["first_seconds"] for p in ref],
        "cpu_seconds": [p["cpu_seconds"] for p in ours], "reference_cpu_seconds": [p["cpu_seconds"] for p in ref],
        "extra_mb": [p["extra_mb"] for p in ours], "reference_extra_mb": [p["extra_mb"] for p in ref],
        "after_load_mb": ours[0]["after_load_mb"], "reference_after_load_mb": ref[0]["after_load_mb"],
        "memory_method": ours[0]["memory_method"], "tokens_scored": len(ours[0]["scores"]),
    }

    with section("load", f"loading {model} for build, eval, generation and scaling ..."):
        lm = load_model(model, device=device, dtype=dtype)
    result["machine"] = _machine(lm, model)
    result["machine"]["load_average_start"] = round(load_start, 2)
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"],
                                limit=max(cfg["eval_questions"], cfg["build_examples"]))

    with section("converged", "time to a converged attribution: engine defaults vs reference loop (20 points) vs "
                              "captum LayerIntegratedGradients (50 steps) ..."):
        from grains.encoding import encode_example

        ig_example = encode_example(lm, IG_PROMPT, IG_CHOSEN, IG_REJECTED)
        converged = bench_time_to_converged(lm, ig_example, reference_steps=cfg["reference_steps"],
                                            captum_steps=cfg["captum_steps"], progress=section.say)
    result["converged"] = converged
    result["converged_engine_vs_reference"] = converged["engine_vs_reference"]

    with section("build_throughput", "build throughput before/after (no cross-validation) ..."):
        from grains.build import BUILD_STEPS

        pairs = truthfulqa_to_pairs(questions[: cfg["build_examples"]])
        result["build_throughput"] = bench_build_throughput(lm, pairs, before_steps=16, after_steps=BUILD_STEPS)

    vector = None
    with section("build", f"vector building ({cfg['build_examples']} examples, {cfg['build_steps']} points) ..."):
        try:
            from grains.build import build_vector
        except ImportError as exc:
            notes.append(f"grains.build is not available ({exc}): build_seconds_per_example not measured.")
            result["build_seconds_per_example"] = float("nan")
        else:
            pairs = truthfulqa_to_pairs(questions[: cfg["build_examples"]])
            start = time.perf_counter()
            built = build_vector(lm, pairs, method="grains", k=5, steps=cfg["build_steps"], select=False)
            result["build_seconds_per_example"] = (time.perf_counter() - start) / len(pairs)
            vector = built.vector

    with section("eval", f"evaluation ({cfg['eval_questions']} TruthfulQA questions) ..."):
        try:
            from grains.evaluation import evaluate
        except ImportError as exc:
            notes.append(f"grains.evaluation is not available ({exc}): eval_seconds_per_question not measured.")
            result["eval_seconds_per_question"] = float("nan")
        else:
            rows = questions[: cfg["eval_questions"]]
            start = time.perf_counter()
            evaluate(lm, rows, kind="truthfulqa")
            result["eval_seconds_per_question"] = (time.perf_counter() - start) / len(rows)

    with section("reuse", "reused work before/after: CV cells, TruthfulQA evaluation, build with nested CV ..."):
        from grains.build import DEFAULT_STRENGTHS, default_layers

        reuse_pairs = truthfulqa_to_pairs(load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=cfg["reuse_pairs"]))
        cv_layers = default_layers(lm.num_layers)[: cfg["reuse_layers"]]
        result["cv_cells"] = bench_cv_cells(lm, reuse_pairs, cv_layers, list(DEFAULT_STRENGTHS)[:2])
        section.say(f"  CV cells/s: {result['cv_cells']['before_cells_per_second']:.2f} -> "
                    f"{result['cv_cells']['after_cells_per_second']:.2f}")
        eval_vector = _timing_vector(lm)
        result["eval_reuse"] = bench_eval(lm, load_truthfulqa(BUILTIN_DATASETS["truthfulqa"],
                                                              limit=cfg["reuse_questions"]),
                                          eval_vector, eval_vector.default_layer, 0.5)
        section.say(f"  TruthfulQA questions/s: {result['eval_reuse']['before_questions_per_second']:.2f} -> "
                    f"{result['eval_reuse']['after_questions_per_second']:.2f}")
        if cfg["build_selection_rows"]:
            rows = truthfulqa_to_pairs(load_truthfulqa(BUILTIN_DATASETS["truthfulqa"],
                                                       limit=cfg["build_selection_rows"]))
            result["build_selection"] = bench_build_selection(lm, rows)
            section.say(f"  build with nested CV: {result['build_selection']['before_minutes']:.1f} -> "
                        f"{result['build_selection']['after_minutes']:.1f} min")
    result["cv_cells_speedup"] = result["cv_cells"]["speedup"]
    result["eval_speedup"] = result["eval_reuse"]["speedup"]

    with section("generation", f"generation ({cfg['gen_tokens']} new tokens, {cfg['gen_rounds']} rounds) ..."):
        gen_vector = vector if vector is not None else _timing_vector(lm)
        layer = gen_vector.default_layer if gen_vector.default_layer is not None else lm.num_layers // 2
        if layer not in gen_vector.directions:
            gen_vector, layer = _timing_vector(lm), lm.num_layers // 2
        gen = _bench_generation(lm, gen_vector, layer, cfg["gen_tokens"], cfg["gen_rounds"], questions[0].prompt)
    result["single_seconds"] = gen["single"]
    result["pair_seconds"] = gen["pair"]
    result["sequential_seconds"] = gen["sequential"]
    result["steered_seconds"] = gen["steered"]
    result["pair_ratio"] = gen["pair"] / gen["single"]
    result["pair_vs_sequential"] = gen["pair"] / gen["sequential"]
    result["hook_overhead"] = gen["steered"] / gen["single"]
    result["generation_detail"] = {"new_tokens": cfg["gen_tokens"], "rounds": cfg["gen_rounds"],
                                   "layer": layer, "vector": gen_vector.method, "strength": 0.5}

    with section("scaling", f"IG time against prompt length ({cfg['scaling_steps']} points) ..."):
        words = " ".join(q.question for q in load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=60)).split()
        scaling = _bench_scaling(lm, words, cfg["scaling_steps"], cfg["scaling_rounds"], section.say)
    result["scaling"] = scaling
    result["ig_scaling_exponent"] = scaling_exponent(scaling["tokens"], scaling["seconds"])

    result["settings"] = cfg
    result["targets"] = _targets(result)
    result["notes"] = notes
    result["machine"]["load_average_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    result["section_seconds"] = section.seconds
    result["total_seconds"] = time.perf_counter() - started
    return {**{k: result[k] for k in ORDER}, **{k: v for k, v in result.items() if k not in ORDER}}


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed CLI arguments; progress goes to stderr, the result to stdout."""
    from grains.presets import DEFAULT_MODEL

    as_json = bool(getattr(args, "json", False))
    result = run_bench(model=getattr(args, "model", None) or DEFAULT_MODEL, quick=bool(getattr(args, "quick", False)),
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True),
                       device=getattr(args, "device", None), dtype=getattr(args, "dtype", None),
                       steps=getattr(args, "steps", None), chunk_size=getattr(args, "chunk_size", None),
                       threads=getattr(args, "threads", None))
    text = json.dumps(result, indent=2)
    if getattr(args, "out", None):
        Path(args.out).write_text(text + "\n")
    print(text if as_json else format_table(result))
    return 0
