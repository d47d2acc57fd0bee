"""Time to a converged attribution on held-out TruthfulQA pairs: the engine at its defaults against the reference
loop at its shipped 20 Gauss-Legendre points, per example, one thread; prints one JSON object.

    OMP_NUM_THREADS=1 python -m benchmarks.time_to_converged --offset 20 --n 5 --out ttc.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.ig_bench import bench_time_to_converged_many
from grains.data import load_any, truthfulqa_to_pairs
from grains.encoding import encode_example
from grains.models import load_model

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "data"


def main() -> int:
    """Run the comparison and print (and optionally save) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--offset", type=int, default=20, help="first TruthfulQA row (the app ships rows before 20)")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = load_model(args.model)
    _, rows = load_any(str(ASSETS / "truthfulqa.jsonl"), limit=args.n, offset=args.offset)
    examples = [encode_example(lm, ex.prompt, ex.chosen, ex.rejected) for ex in truthfulqa_to_pairs(rows)]
    result = bench_time_to_converged_many(lm, examples, progress=lambda m: print(m, file=sys.stderr, flush=True))
    result.update(model=args.model, offset=args.offset, n=args.n)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
