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
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.arguments import add_bench_arguments  # noqa: F401 - re-exported for the CLI and tests

Progress = Callable[[str], None]
_MB = 1024 * 1024

# name: (comparison, threshold, what it means)
TARGETS: dict[str, tuple[str, float, str]] = {
    "ig_speedup": (">=", 10.0, "batched IG vs the step-by-step reference loop"),
    "ig_max_rel_diff": ("<=", 1e-3, "both IG implementations give the same scores"),
    "ig_memory_ratio": ("<=", 0.5, "extra RAM of batched IG / the reference's"),
    "pair_ratio": ("<=", 1.3, "steered+unsteered in one call / one unsteered row"),
    "hook_overhead": ("<=", 1.05, "steered generation / unsteered, same length"),
    "ig_scaling_exponent": ("<=", 1.3, "slope of log IG time vs log prompt tokens"),
    "converged_engine_vs_reference": ("<=", 1 / 3, "engine converged (defaults) / reference loop at 20 points"),
}

# The example every IG measurement uses (TruthfulQA's first question, best vs first incorrect answer).
IG_PROMPT = "What happens to you if you eat watermelon seeds?"
IG_CHOSEN = " The watermelon seeds pass through your digestive system."
IG_REJECTED = " You grow watermelons in your stomach."
SCALING_TOKENS = (32, 64, 128, 256)


def _settings(quick: bool, steps: int | None) -> dict[str, Any]:
    """Sizes of every measurement. Quick keeps the reference loop short (it costs ~4 s per point on 2 cores)."""
    if quick:
        out = {"ig_steps": 8, "ig_order": "OR", "reference_steps": 20, "captum_steps": 50,
               "gen_tokens": 16, "gen_rounds": 2, "scaling_steps": 2,
               "scaling_rounds": 1, "build_examples": 1, "build_steps": 16, "eval_questions": 2}
    else:
        out = {"ig_steps": 20, "ig_order": "ORRO", "reference_steps": 20, "captum_steps": 50,
               "gen_tokens": 32, "gen_rounds": 5, "scaling_steps": 6,
               "scaling_rounds": 2, "build_examples": 4, "build_steps": 16, "eval_questions": 10}
    if steps is not None:
        out["ig_steps"] = int(steps)
    out["quick"] = quick
    return out


# ---------------------------------------------------------------- memory measurement (runs in a fresh process)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / _MB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def _peak_rss() -> Iterator[dict[str, Any]]:
    """Peak RSS (MB) inside the block: the kernel's VmHWM after a reset where possible, else a 2 ms psutil sampler."""
    out: dict[str, Any] = {}
    kernel = _reset_peak() and _vm_hwm_mb() is not None
    stop = threading.Event()
    sampled = [_rss_mb()]

    def sample() -> None:
        while not stop.wait(0.002):
            sampled[0] = max(sampled[0], _rss_mb())

    sampler = None if kernel else threading.Thread(target=sample, daemon=True)
    if sampler:
        sampler.start()
    try:
        yield out
    finally:
        stop.set()
        if sampler:
            sampler.join()
        peak = _vm_hwm_mb() if kernel else None
        out["peak_mb"] = max(peak if peak is not None else 0.0, sampled[0], _rss_mb())
        out["method"] = "VmHWM after clear_refs" if kernel else "psutil sampling every 2 ms"


def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load, warm up, record RSS, run one IG under a peak-RSS watch, then time a second one."""
    import gc

    from benchmarks.reference import reference_attribute
    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.models import load_model

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    lm = load_model(spec["model"], device=spec.get("device"), dtype=spec.get("dtype"))
    example = encode_example(lm, IG_PROMPT, IG_CHOSEN, IG_REJECTED)
    with torch.no_grad():  # warm the forward kernels (oneDNN primitives, mask builders) before measuring
        ids = torch.tensor([example.sequence_ids("plus")], device=lm.adapter.input_device)
        lm.model(input_ids=ids, use_cache=False)
    gc.collect()
    after_load = _rss_mb()
    steps = spec["steps"]

    def run() -> tuple[list[float], float, int]:  # scores, seconds, chunk size
        if spec["impl"] == "reference":
            ref = reference_attribute(lm, example, steps=steps, points=spec.get("points", "graded"))
            return ref.plus_scores + ref.minus_scores, ref.seconds, 1
        res = attribute_example(lm, example, steps=steps, chunk_size=spec.get("chunk_size"),
                                points=spec.get("points", "graded"))
        return res.plus_scores + res.minus_scores, res.seconds, res.chunk_size

    with _peak_rss() as peak:
        scores, first, chunk = run()
    process = time.process_time()
    warm = run()[1]  # the time that counts: a warm process, as in the app (the first run pays page faults)
    cpu = time.process_time() - process
    return {"after_load_mb": after_load, "peak_mb": peak["peak_mb"], "extra_mb": peak["peak_mb"] - after_load,
            "memory_method": peak["method"], "seconds": warm, "first_seconds": first, "cpu_seconds": cpu,
            "scores": scores, "chunk_size": chunk, "threads": torch.get_num_threads()}


def _probe_main() -> None:
    """Entry point of the subprocess: spec as JSON in argv[1], result as the last line of stdout."""
    import logging

    logging.disable(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    result = _probe(json.loads(sys.argv[1]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


def _run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `_probe` in a fresh Python process (so its peak RSS is its own) and return its result."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    code = "from benchmarks.harness import _probe_main; _probe_main()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=root, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the {spec['impl']} IG subprocess failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- in-process measurements


def _relative(delta: float, gap: float) -> float:
    return abs(delta) / max(abs(gap), 1e-8)


def captum_layer_ig(lm: Any, example: Any, n_steps: int = 50, target: str = "sequence") -> dict[str, Any]:
    """captum's own LayerIntegratedGradients on the embedding layer (as captum's LLM tutorials use it) at its
    default Gauss-Legendre rule, on the same contrastive objective and zero baseline (BOS/specials kept) as the
    engine. The ids of s+ and s- go in as one row; a thin module looks them up (one embedding call, so captum can
    patch its output) and maps the baseline's sentinel id to a zero vector."""
    from captum.attr import LayerIntegratedGradients

    from grains.attribution import ContrastiveObjective

    objective = ContrastiveObjective(lm, example, target)
    plus_ids, minus_ids = example.sequence_ids("plus"), example.sequence_ids("minus")
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([plus_ids + minus_ids], device=lm.adapter.input_device)
    keep = torch.cat([example.keep_mask("plus"), example.keep_mask("minus")]).to(ids.device)
    base_ids = torch.where(keep, ids, torch.full_like(ids, vocab))  # sentinel: zero embedding

    class _Lookup(torch.nn.Module):
        def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
            emb = lm.adapter.embed_ids(token_ids.clamp(max=vocab - 1), None)
            return emb * (token_ids < vocab).unsqueeze(-1).to(emb.dtype)

    lookup = _Lookup()
    n_plus = len(plus_ids)

    def forward(token_ids: torch.Tensor) -> torch.Tensor:
        emb = lookup(token_ids)
        return objective(emb[:, :n_plus], emb[:, n_plus:])

    start = time.perf_counter()
    lig = LayerIntegratedGradients(forward, lookup)
    attr = lig.attribute(ids, baselines=base_ids, n_steps=n_steps, method="gausslegendre",
                         internal_batch_size=n_steps)
    with torch.no_grad():
        f = forward(torch.cat([ids, base_ids]))
    seconds = time.perf_counter() - start
    phi = attr[0].float().sum(-1)
    gap = float(f[0] - f[1])
    delta = float(phi.sum()) - gap
    return {"seconds": seconds, "points": n_steps, "delta": delta, "relative_delta": _relative(delta, gap)}


def bench_time_to_converged(lm: Any, example: Any, reference_steps: int = 20, captum_steps: int = 50,
                            progress: Progress | None = None) -> dict[str, Any]:
    """Time to a converged attribution: the engine at its defaults (graded rule, tolerance mode) against the
    reference loop at its shipped 20 Gauss-Legendre points and captum's LayerIntegratedGradients at 50 steps, each
    with the relative delta it reached (|delta| / |f(x) - f(x')|)."""
    from benchmarks.reference import reference_attribute
    from grains.attribution import DEFAULT_STEPS, DEFAULT_TOLERANCE, attribute_example

    say = progress or (lambda _msg: None)
    ours = attribute_example(lm, example, steps=DEFAULT_STEPS, tolerance=DEFAULT_TOLERANCE)
    out: dict[str, Any] = {"engine": {
        "seconds": ours.seconds, "relative_delta": ours.relative_delta, "abs_relative_delta": ours.abs_relative_delta,
        "converged": ours.converged, "gradient_evals": ours.gradient_evals, "forward_evals": ours.forward_evals,
        "points": f"graded {DEFAULT_STEPS} + tolerance {DEFAULT_TOLERANCE:g}"}}
    say(f"  engine (defaults): {ours.seconds:.1f} s, delta {ours.relative_delta:.1%}, "
        f"{ours.gradient_evals} gradient points")
    ref = reference_attribute(lm, example, steps=reference_steps, points="gauss-legendre")
    gap = ref.f_input - ref.f_baseline
    out["reference"] = {"seconds": ref.seconds, "relative_delta": _relative(ref.delta, gap),
                        "points": f"gauss-legendre {reference_steps}"}
    say(f"  reference loop ({reference_steps} GL points): {ref.seconds:.1f} s, delta {_relative(ref.delta, gap):.1%}")
    try:
        cap = captum_layer_ig(lm, example, n_steps=captum_steps)
        cap["points"] = f"captum LayerIntegratedGradients {captum_steps}"
        out["captum"] = cap
        say(f"  captum LayerIG ({captum_steps} steps): {cap['seconds']:.1f} s, delta {cap['relative_delta']:.1%}")
    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
        out["captum"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["inseq"] = {"error": "not a peer: inseq==0.7.1 installs beside the pins and imports on transformers 5, but "
                             "its contrastive attribution refuses Integrated Gradients (ValueError: 'methods "
                             "expanding inputs to multiple steps (e.g. Integrated Gradients) are not yet supported "
                             "for contrastive attribution')"}
    out["engine_vs_reference"] = ours.seconds / ref.seconds
    if "seconds" in out["captum"]:
        out["engine_vs_captum"] = ours.seconds / out["captum"]["seconds"]
    return out


def bench_time_to_converged_many(lm: Any, examples: list[Any], reference_steps: int = 20,
                                 progress: Progress | None = None) -> dict[str, Any]:
    """Time to a converged attribution per example (engine defaults against the reference loop at
    `reference_steps` Gauss-Legendre points, run one after the other on the same example), and the median ratio.

    Args:
        lm: a loaded model.
        examples: encoded examples (grains.encoding.encode_example).
        reference_steps: the reference loop's points (20, as shipped).
        progress: called with one line per example.

    Returns:
        {"rows": [per example: engine/reference seconds, relative deltas, gradient and forward evals, ratio],
        "median_ratio": median of engine / reference wall seconds, "median_cpu_ratio": the same in process CPU
        seconds (steadier on a shared machine, at one thread), "median_engine_relative_delta": ...}.
    """
    from benchmarks.reference import reference_attribute
    from grains.attribution import DEFAULT_STEPS, DEFAULT_TOLERANCE, attribute_example

    say = progress or (lambda _msg: None)
    rows = []
    for index, example in enumerate(examples):
        cpu = time.process_time()
        ours = attribute_example(lm, example, steps=DEFAULT_STEPS, tolerance=DEFAULT_TOLERANCE)
        engine_cpu = time.process_time() - cpu
        cpu = time.process_time()
        ref = reference_attribute(lm, example, steps=reference_steps, points="gauss-legendre")
        reference_cpu = time.process_time() - cpu
        row = {"engine_seconds": ours.seconds, "reference_seconds": ref.seconds,
               "ratio": ours.seconds / ref.seconds, "engine_cpu_seconds": engine_cpu,
               "reference_cpu_seconds": reference_cpu, "cpu_ratio": engine_cpu / max(reference_cpu, 1e-9),
               "engine_relative_delta": ours.relative_delta,
               "engine_converged": ours.converged, "gradient_evals": ours.gradient_evals,
               "forward_evals": ours.forward_evals,
               "reference_relative_delta": _relative(ref.delta, ref.f_input - ref.f_baseline),
               "tokens": len(ours.plus_tokens) + len(ours.minus_tokens)}
        rows.append(row)
        say(f"  example {index}: engine {row['engine_seconds']:.1f} s ({row['gradient_evals']} gradient points, "
            f"delta {row['engine_relative_delta']:.1%}), reference {row['reference_seconds']:.1f} s "
            f"(delta {row['reference_relative_delta']:.1%}): ratio {row['ratio']:.2f}, CPU-time ratio "
            f"{row['cpu_ratio']:.2f}")
    return {"rows": rows, "median_ratio": _median([r["ratio"] for r in rows]),
            "median_cpu_ratio": _median([r["cpu_ratio"] for r in rows]),
            "median_engine_relative_delta": _median([r["engine_relative_delta"] for r in rows]),
            "median_reference_relative_delta": _median([r["reference_relative_delta"] for r in rows])}


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


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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


def _prompt_of_length(lm: Any, words: list[str], target: int) -> tuple[str, int]:
    """The shortest run of `words` whose formatted prompt has at least `target` tokens, and its token count."""

    def length(n: int) -> int:
        return len(lm.encode_prompt(" ".join(words[:n])).ids)

    lo, hi = 1, len(words)
    if length(hi) < target:
        return " ".join(words), length(hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if length(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo]), length(lo)


def _bench_scaling(lm: Any, words: list[str], steps: int, rounds: int, progress: Progress) -> dict[str, Any]:
    """IG seconds (median over rounds, sizes interleaved) for prompts of ~32..256 tokens."""
    from grains.attribution import attribute_example
    from grains.encoding import encode_example

    warm = encode_example(lm, IG_PROMPT, IG_CHOSEN, IG_REJECTED)
    attribute_example(lm, warm, steps=steps)  # warm-up: first-call costs out of the smallest size
    examples, tokens = [], []
    for target in SCALING_TOKENS:
        prompt, n_tokens = _prompt_of_length(lm, words, target)
        examples.append(encode_example(lm, prompt, IG_CHOSEN, IG_REJECTED))
        tokens.append(n_tokens)
    times: list[list[float]] = [[] for _ in examples]
    chunks = [0] * len(examples)
    for _ in range(rounds):
        for i, example in enumerate(examples):
            result = attribute_example(lm, example, steps=steps)
            times[i].append(result.seconds)
            chunks[i] = result.chunk_size
            progress(f"  scaling: {tokens[i]} prompt tokens, {steps} points: {result.seconds:.2f} s")
    seconds = [_median(t) for t in times]
    return {"tokens": tokens, "seconds": seconds, "chunk_sizes": chunks, "steps": steps, "rounds": rounds}


def scaling_exponent(tokens: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(tokens)."""
    xs = [math.log(t) for t in tokens]
    ys = [math.log(max(s, 1e-9)) for s in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return float(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var) if var > 0 else float("nan")


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


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, (op, threshold, meaning) in TARGETS.items():
        value = result.get(name)
        ok = value is not None and math.isfinite(value) and (value >= threshold if op == ">=" else value <= threshold)
        out[name] = {"target": f"{op} {threshold:g}", "value": value, "met": bool(ok), "meaning": meaning}
    return out


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


# ---------------------------------------------------------------- output and CLI


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.1e}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the figures, with each target and whether it is met."""
    m = result["machine"]
    lines = [f"GrAInS bench: {m['model']} on {m['device']} ({m['dtype']}), {m['threads']} threads, torch {m['torch']}"
             f", {result['settings']['ig_steps']} IG points{' (quick)' if result['settings']['quick'] else ''}",
             ""]
    rows = [
        ("ig_seconds", "s"), ("ig_reference_seconds", "s"), ("ig_speedup", "x"), ("ig_max_rel_diff", ""),
        ("ig_peak_extra_mb", "MB"), ("ig_reference_peak_extra_mb", "MB"), ("ig_memory_ratio", ""),
        ("single_seconds", "s"), ("steered_seconds", "s"), ("pair_seconds", "s"), ("sequential_seconds", "s"),
        ("pair_ratio", ""), ("hook_overhead", ""), ("build_seconds_per_example", "s"),
        ("eval_seconds_per_question", "s"), ("ig_scaling_exponent", ""), ("converged_engine_vs_reference", ""),
    ]
    targets = result.get("targets", {})
    lines.append(f"{'metric':30s} {'value':>10s}  {'target':10s} status")
    for key, unit in rows:
        target = targets.get(key)
        status = "" if target is None else ("met" if target["met"] else "MISSED")
        value = _fmt(result.get(key)) + (f" {unit}" if unit else "")
        lines.append(f"{key:30s} {value:>10s}  {target['target'] if target else '':10s} {status}")
    conv = result.get("converged")
    if conv:
        lines.append("")
        lines.append("time to a converged attribution (relative delta reached):")
        for name in ("engine", "reference", "captum", "inseq"):
            row = conv.get(name, {})
            if "seconds" in row:
                lines.append(f"  {name:10s} {row['seconds']:8.1f} s  delta {row['relative_delta']:7.1%}  "
                             f"{row['points']}")
            else:
                lines.append(f"  {name:10s} {row.get('error', 'n/a')}")
    thr = result.get("build_throughput")
    if thr:
        lines.append(f"build throughput: {thr['before_examples_per_minute']:.2f} examples/min at "
                     f"{thr['before_steps']} points before, {thr['after_examples_per_minute']:.2f} at "
                     f"{thr['after_steps']} now")
    sc = result["scaling"]
    lines.append("")
    lines.append(f"IG time vs prompt tokens ({sc.get('steps', '?')} points): " + ", ".join(
        f"{t} tok {s:.2f} s" for t, s in zip(sc["tokens"], sc["seconds"])))
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


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
