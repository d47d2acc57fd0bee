"""Relative delta, points and seconds of `grains.attribute` at its defaults on held-out TruthfulQA rows (the app
ships rows before 20), one JSON line per row: the rows behind the tables in docs/ig_convergence.md.

    python -m benchmarks.convergence_rows --model gemma-3-270m --target sequence --offset 20 --n 20 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grains.attribution import attribute_example
from grains.data import load_any, truthfulqa_to_pairs
from grains.encoding import encode_example
from grains.models import load_model

DATA = Path(__file__).resolve().parent.parent / "assets" / "data" / "truthfulqa.jsonl"


def main() -> int:
    """Print one JSON line per row: rel delta, converged, gradient and forward points, seconds, panels."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--target", default="sequence", choices=["sequence", "last"])
    parser.add_argument("--offset", type=int, default=20)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="defaults", help="a name for this run, copied into every line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    _, rows = load_any(str(DATA), limit=args.n, offset=args.offset)
    for index, ex in enumerate(truthfulqa_to_pairs(rows), start=args.offset):
        example = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
        start, cpu = time.perf_counter(), time.process_time()
        r = attribute_example(lm, example, steps=16, target=args.target, tolerance=0.05)
        gap = r.f_input - r.f_baseline
        print(json.dumps({"model": args.model, "target": args.target, "index": index, "scheme": args.label,
                          "rel": abs(r.delta) / abs(gap) if gap else None, "abs_rel": r.abs_relative_delta,
                          "conv": r.converged, "gap": gap, "delta": r.delta, "gevals": r.gradient_evals,
                          "fevals": r.forward_evals, "s": time.perf_counter() - start,
                          "cpu_s": time.process_time() - cpu, "tokens": len(r.plus_tokens)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
