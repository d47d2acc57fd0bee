"""IG in bf16 (autocast) against fp32 on a real model, in one run: the time of a pass, which top-k tokens build would
ablate, and how far the per-example ablation shifts move, next to what 16 fp32 points change against 32.

For each TruthfulQA pair (best answer vs first incorrect): contrastive IG at build's setting (16 graded points, no
refinement) in fp32 (the library's route), the same under `torch.autocast("cpu", dtype=torch.bfloat16)` (matrix
products in bf16 with fp32 accumulation, the residual stream fp32), and fp32 at 32 points as a reference. Top-k is
build's (k 5 per sign and sequence, content tokens); agreement is the Jaccard index of each of the four sets (I+ and
I- of s+ and s-), averaged. `delta_cos_*`: cosine per layer between the d+ - d- shifts that the fp32 and the bf16
top-k give. Run through /work/bin/heavy:

    python -m benchmarks.ig_precision --model qwen2.5-0.5b-instruct --n 6 --out /tmp/ig_precision.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch


def _sets(encoded: Any, result: Any, k: int = 5) -> list[set[int]]:
    from grains.ablation import select_for_example

    chosen = select_for_example(encoded, result, k, True, False, strict=False)
    return [set(getattr(chosen[w], side)) for w in ("plus", "minus") for side in ("positive", "negative")]


def _jaccard(a: list[set[int]], b: list[set[int]]) -> float:
    return sum(len(x & y) / max(len(x | y), 1) for x, y in zip(a, b)) / len(a)


def measure_pair(lm: Any, pair: Any) -> dict[str, Any]:
    """One pair: seconds and relative delta per setting, top-k agreement, and the shifts' cosine per layer."""
    from grains.ablation import ablation_deltas, select_for_example
    from grains.attribution import attribute_example
    from grains.encoding import encode_example

    encoded = encode_example(lm, pair.prompt, pair.chosen, pair.rejected)
    out: dict[str, Any] = {"tokens": len(encoded.sequence_ids("plus"))}
    results = {}
    for name, steps, autocast in (("fp32", 16, False), ("bf16", 16, True), ("fp32_32", 32, False)):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            results[name] = attribute_example(lm, encoded, steps=steps, points="graded", tolerance=None)
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_reldelta"] = results[name].relative_delta
    sets = {name: _sets(encoded, r) for name, r in results.items()}
    out["fp32_jac_vs32"] = _jaccard(sets["fp32"], sets["fp32_32"])
    out["bf16_jac_vs32"] = _jaccard(sets["bf16"], sets["fp32_32"])
    out["bf16_jac_vs_fp32"] = _jaccard(sets["bf16"], sets["fp32"])
    shifts = {}
    for name in ("fp32", "bf16"):
        d = ablation_deltas(lm, encoded, select_for_example(encoded, results[name], 5, True, False, strict=False),
                            "zero", "answer")
        shifts[name] = d.d_plus - d.d_minus  # [2, L, D]
    cos = [float(torch.nn.functional.cosine_similarity(shifts["fp32"][:, la].flatten(),
                                                       shifts["bf16"][:, la].flatten(), dim=0))
           for la in range(lm.num_layers)]
    out["delta_cos_mean"], out["delta_cos_min"] = sum(cos) / len(cos), min(cos)
    return out


def main() -> int:
    from grains.data import BUILTIN_DATASETS, load_truthfulqa, truthfulqa_to_pairs
    from grains.models import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out", default="/tmp/ig_precision.json")
    args = ap.parse_args()
    lm = load_model(args.model)
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=args.offset + args.n)
    rows = []
    for i, pair in enumerate(truthfulqa_to_pairs(questions)[args.offset:]):
        row = {"row": args.offset + i, **measure_pair(lm, pair)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(args.out, "w") as fh:
        json.dump({"model": args.model, "threads": torch.get_num_threads(), "notes": lm.notes, "rows": rows}, fh,
                  indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
