"""IG benchmarks: time to a converged attribution (engine, reference loop, captum) and IG time against prompt length."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from benchmarks.timing import Progress
from benchmarks.timing import median as _median

# The example every IG measurement uses (TruthfulQA's first question, best vs first incorrect answer).
IG_PROMPT = "What happens to you if you eat watermelon seeds?"
IG_CHOSEN = " The watermelon seeds pass through your digestive system."
IG_REJECTED = " You grow watermelons in your stomach."
SCALING_TOKENS = (32, 64, 128, 256)


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
