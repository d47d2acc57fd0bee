"""How well contrastive IG adds up on real weights, per integration scheme: the relative convergence delta
|sum(phi) - (f(x) - f(x'))| / |f(x) - f(x')| (and relative to sum |phi|), the gradient evaluations and the seconds.

Bounded: the first N examples of each shipped dataset (TruthfulQA via truthfulqa_to_pairs, hallucination_pairs,
hhh_alignment), for the chosen models and targets, one thread. Writes one JSON line per (model, target, example,
scheme) and prints a median / 90th-percentile table per model, target and scheme.

    python scripts/ig_convergence_study.py --models gemma-3-270m --n 5 --out /tmp/ig_study.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grains import quadrature  # noqa: E402
from grains.attribution import DEFAULT_STEPS, DEFAULT_TOLERANCE, attribute_example  # noqa: E402
from grains.data import load_any, truthfulqa_to_pairs  # noqa: E402
from grains.encoding import encode_example  # noqa: E402
from grains.models import load_model  # noqa: E402

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "data"
# name -> keyword arguments of attribute_example. "before" is the library's default until this study (20 GL points).
# "quad" overrides grains.quadrature's graded-rule constants for that scheme (log/linear panel sizes, log share).
SCHEMES = {
    "gl-20 (before)": {"steps": 20, "points": "gauss-legendre"},
    "defaults": {"steps": DEFAULT_STEPS, "tolerance": DEFAULT_TOLERANCE},  # attribute's: graded 16, 5%, cap 128
    "gl-32": {"steps": 32, "points": "gauss-legendre"},
    "graded-16": {"steps": 16, "points": "graded"},
    "graded-32": {"steps": 32, "points": "graded"},
    "graded-16+tol5%": {"steps": 16, "points": "graded", "tolerance": 0.05, "max_points": 64},
    "graded-16+tol5% lin2": {"steps": 16, "points": "graded", "tolerance": 0.05, "max_points": 64,
                             "quad": {"LIN_PANEL_NODES": 2}},
    "graded-16+tol5% log3 share.5": {"steps": 16, "points": "graded", "tolerance": 0.05, "max_points": 64,
                                     "quad": {"LOG_PANEL_NODES": 3, "LOG_SHARE": 0.5, "LIN_PANEL_NODES": 3}},
}


DATASETS = ("truthfulqa", "hallucination_pairs", "hhh_alignment")


def examples(n: int, offset: int = 0, datasets: tuple[str, ...] = DATASETS) -> list[tuple[str, object]]:
    """n pairs from row `offset` of each shipped text dataset, labelled by dataset (rows from 20 on are not app
    examples: the held-out check uses --datasets truthfulqa --offset 20 --n 20)."""
    out = []
    for name in datasets:
        _, rows = load_any(str(ASSETS / f"{name}.jsonl"), limit=n, offset=offset)
        out += [(name, ex) for ex in (truthfulqa_to_pairs(rows) if name == "truthfulqa" else rows)]
    return out


def topk_overlap(lm, encoded, reference, candidate, k: int = 5) -> float:
    """Share of build's top-k tokens (I+ and I- of s+ and s-, content tokens only) that `candidate` picks as
    `reference` does."""
    from grains.ablation import select_for_example

    ref = select_for_example(encoded, reference, k, True, False, strict=False)
    cand = select_for_example(encoded, candidate, k, True, False, strict=False)
    hits = total = 0
    for which in ("plus", "minus"):
        for side in ("positive", "negative"):
            want = set(getattr(ref[which], side))
            hits += len(want & set(getattr(cand[which], side)))
            total += len(want)
    return hits / max(total, 1)


def topk_study(args: argparse.Namespace, data: list) -> int:
    """Top-k overlap with a converged attribution (graded, tolerance 2%, cap 128) per number of fixed graded points."""
    counts = [int(c) for c in args.topk_points.split(",")]
    rows = []
    with open(args.out, "a") as sink:
        for model_name in args.models.split(","):
            lm = load_model(model_name)
            for index, (dataset, ex) in enumerate(data):
                encoded = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
                ref = attribute_example(lm, encoded, steps=32, tolerance=0.02, max_points=128)
                for n in counts:
                    cand = attribute_example(lm, encoded, steps=n, points="graded")
                    row = {"mode": "topk", "model": model_name, "dataset": dataset, "index": index, "points": n,
                           "overlap": topk_overlap(lm, encoded, ref, cand), "seconds": cand.seconds,
                           "reference_rel_delta": ref.relative_delta, "reference_converged": ref.converged}
                    rows.append(row)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(f"{model_name} {dataset}#{index} {n} points: overlap {row['overlap']:.2f} "
                          f"(reference delta {ref.relative_delta:.3f})", file=sys.stderr, flush=True)
    print("| model | points | n | mean top-5 overlap | min | mean s |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models.split(","):
        for n in counts:
            sel = [r for r in rows if r["model"] == model_name and r["points"] == n]
            if sel:
                print(f"| {model_name} | {n} | {len(sel)} | {statistics.mean(r['overlap'] for r in sel):.2f} | "
                      f"{min(r['overlap'] for r in sel):.2f} | {statistics.mean(r['seconds'] for r in sel):.1f} |")
    return 0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemma-3-270m,qwen2.5-0.5b-instruct")
    parser.add_argument("--targets", default="sequence,last")
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated names from SCHEMES")
    parser.add_argument("--n", type=int, default=5, help="examples per dataset")
    parser.add_argument("--offset", type=int, default=0, help="first row of each dataset")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="ig_convergence_study.jsonl")
    parser.add_argument("--topk", action="store_true", help="measure top-k overlap per number of points instead")
    parser.add_argument("--topk-points", default="4,8,12,16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.topk:
        return topk_study(args, examples(args.n, args.offset, tuple(args.datasets.split(","))))
    schemes = [s for s in args.schemes.split(",") if s]
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        parser.error(f"unknown schemes {unknown}; known: {list(SCHEMES)}")
    data = examples(args.n, args.offset, tuple(args.datasets.split(",")))
    records = []
    if Path(args.out).exists():  # resume: rows already measured are read back, not recomputed
        records = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
    done = {(r["model"], r["target"], r["dataset"], r["index"], r["scheme"]) for r in records if "scheme" in r}
    with open(args.out, "a") as sink:
        for model_name in args.models.split(","):
            lm = load_model(model_name)
            for target in args.targets.split(","):
                for index, (dataset, ex) in enumerate(data):
                    encoded = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
                    for scheme in schemes:
                        if (model_name, target, dataset, index, scheme) in done:
                            continue
                        settings = dict(SCHEMES[scheme])
                        overrides = settings.pop("quad", {})
                        saved = {k: getattr(quadrature, k) for k in overrides}
                        for k, v in overrides.items():
                            setattr(quadrature, k, v)
                        start = time.perf_counter()
                        try:
                            r = attribute_example(lm, encoded, target=target, **settings)
                        finally:
                            for k, v in saved.items():
                                setattr(quadrature, k, v)
                        row = {"model": model_name, "target": target, "dataset": dataset, "index": index,
                               "scheme": scheme, "rel_delta": r.relative_delta, "abs_rel_delta": r.abs_relative_delta,
                               "converged": r.converged, "convergence": r.convergence,
                               "gap": r.f_input - r.f_baseline, "delta": r.delta,
                               "points_used": r.points_used, "gradient_evals": r.gradient_evals,
                               "forward_evals": r.forward_evals, "seconds": time.perf_counter() - start,
                               "tokens": len(r.plus_tokens) + len(r.minus_tokens), "panel_error": r.panel_error}
                        records.append(row)
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                        print(f"{model_name} {target} {dataset}#{index} {scheme}: rel {row['rel_delta']:.3f} "
                              f"abs {row['abs_rel_delta']:.3f} evals {row['gradient_evals']} {row['seconds']:.1f} s",
                              file=sys.stderr, flush=True)
            del lm
    print("| model | target | scheme | n | median rel delta | p90 rel delta | converged | median evals | median s |")
    print("|---|---|---|---|---|---|---|---|---|")
    records = [r for r in records if "scheme" in r and r["scheme"] in schemes]
    keys = sorted({(r["model"], r["target"], r["scheme"]) for r in records}, key=lambda k: (k[0], k[1], k[2]))
    for model_name, target, scheme in keys:
        rows = [r for r in records if (r["model"], r["target"], r["scheme"]) == (model_name, target, scheme)]
        rel = [r["rel_delta"] for r in rows]
        print(f"| {model_name} | {target} | {scheme} | {len(rows)} | {statistics.median(rel):.3f} | {pct(rel, 90):.3f} "
              f"| {sum(r['converged'] for r in rows)}/{len(rows)} | "
              f"{statistics.median(r['gradient_evals'] for r in rows):.0f} | "
              f"{statistics.median(r['seconds'] for r in rows):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
