"""What bf16 changes, measured on a real model against fp32 in one run: pair margins, TruthfulQA MC1/MC2, the cell
build's cross-validation chooses, IG scores, deltas and top-k tokens, and the time of a scoring pass.

Two variants. `--variant cast`: bf16 is the whole model cast to bfloat16 (weights and activations; oneDNN's bf16
matmuls accumulate in fp32; log-softmax and the steering arithmetic stay in fp32, as the library computes them).
`--variant route`: the weights stay fp32 and only the route of fp32 products changes, strict against oneDNN's fast
route (`torch.backends.mkldnn.matmul.fp32_precision = "bf16"`, what grains.matmul_precision adopts after its check).
The JSON keeps the keys "fp32" (strict / fp32 weights) and "bf16" (the fast route / the cast). Run through
/work/bin/heavy:

    python -m benchmarks.precision_bench --model gemma-3-270m --variant route --out /tmp/precision_route.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from benchmarks.timing import median


def _measure(lm: Any, pairs: list[Any], questions: list[Any], ig_pairs: list[Any], build_rows: list[Any],
             rounds: int) -> dict[str, Any]:
    from grains.attribution import attribute_example
    from grains.build import build_vector
    from grains.encoding import encode_example
    from grains.item_scoring import BatchedItems
    from grains.scoring import score_pairs

    out: dict[str, Any] = {}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        margins = [s.margin() for s in score_pairs(lm, pairs)]
        times.append(time.perf_counter() - start)
    out["margins"], out["score_seconds"] = margins, median(times)
    items = BatchedItems(lm, questions, "truthfulqa").score(None)
    out["mc1"] = [i["mc1"] for i in items]
    out["mc2"] = [i["mc2"] for i in items]
    out["ig"] = []
    for p in ig_pairs:
        enc = encode_example(lm, p.prompt, p.chosen, p.rejected)
        try:
            res = attribute_example(lm, enc, steps=16, points="graded", tolerance=None)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            out["ig"].append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        scores = res.plus_scores + res.minus_scores
        top = sorted(range(len(scores)), key=lambda i: -abs(scores[i]))[:5]
        out["ig"].append({"scores": scores, "relative_delta": res.relative_delta, "top5": sorted(top),
                          "seconds": res.seconds})
    start = time.perf_counter()
    built = build_vector(lm, build_rows, method="caa")
    sel = built.selection.to_dict() if built.selection else {}
    out["build"] = {"layer": built.vector.default_layer, "strength": built.vector.default_strength,
                    "best_of_n": {k: sel.get("best_of_n", {}).get(k) for k in ("layer", "strength", "margin_gain")},
                    "cv_margin_gain": sel.get("cv_margin_gain"), "p_value": sel.get("p_value"),
                    "seconds": time.perf_counter() - start}
    return out


def compare(fp32: dict[str, Any], bf16: dict[str, Any]) -> dict[str, Any]:
    """The differences that matter: margins and their signs, MC1/MC2, the chosen cell, IG scores, delta, top-5."""
    def maxdiff(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) for x, y in zip(a, b))

    ig = []
    for a, b in zip(fp32["ig"], bf16["ig"]):
        if "error" in a or "error" in b:
            ig.append({"error": a.get("error") or b.get("error")})
            continue
        scale = max(abs(x) for x in a["scores"]) or 1.0
        ig.append({"max_rel_score_diff": maxdiff(a["scores"], b["scores"]) / scale,
                   "relative_delta_fp32": a["relative_delta"], "relative_delta_bf16": b["relative_delta"],
                   "top5_overlap": len(set(a["top5"]) & set(b["top5"])) / 5,
                   "seconds_ratio": a["seconds"] / b["seconds"]})
    n = len(fp32["margins"])
    return {
        "margin_max_abs_diff": maxdiff(fp32["margins"], bf16["margins"]),
        "margin_mean_abs": sum(abs(m) for m in fp32["margins"]) / n,
        "margin_sign_flips": sum((a > 0) != (b > 0) for a, b in zip(fp32["margins"], bf16["margins"])),
        "pairs": n,
        "mc1_fp32": sum(fp32["mc1"]) / len(fp32["mc1"]), "mc1_bf16": sum(bf16["mc1"]) / len(bf16["mc1"]),
        "mc1_items_changed": sum(a != b for a, b in zip(fp32["mc1"], bf16["mc1"])),
        "mc2_fp32": sum(fp32["mc2"]) / len(fp32["mc2"]), "mc2_bf16": sum(bf16["mc2"]) / len(bf16["mc2"]),
        "mc2_max_abs_diff": maxdiff(fp32["mc2"], bf16["mc2"]),
        "build_fp32": fp32["build"], "build_bf16": bf16["build"],
        "same_chosen_cell": (fp32["build"]["layer"], fp32["build"]["strength"]) == (bf16["build"]["layer"],
                                                                                    bf16["build"]["strength"]),
        "ig": ig,
        "score_speedup": fp32["score_seconds"] / bf16["score_seconds"],
        "build_speedup": fp32["build"]["seconds"] / bf16["build"]["seconds"],
    }


def run(model: str, n_pairs: int = 32, n_questions: int = 32, n_ig: int = 3, n_build: int = 16,
        rounds: int = 2, variant: str = "cast") -> dict[str, Any]:
    """Measure fp32 then bf16 (the cast or the fast route) on the same items; returns {"fp32", "bf16", "comparison"}."""
    from grains.data import BUILTIN_DATASETS, load_truthfulqa, truthfulqa_to_pairs
    from grains.matmul_precision import FAST, _set, strict_fp32
    from grains.models import load_model

    lm = load_model(model)
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=max(n_pairs, n_questions, n_build))
    pairs = truthfulqa_to_pairs(questions[:n_pairs])
    args = (pairs, questions[:n_questions], pairs[:n_ig], truthfulqa_to_pairs(questions[:n_build]), rounds)
    if variant == "route":
        with strict_fp32():
            fp32 = _measure(lm, *args)
        _set(FAST)
        bf16 = _measure(lm, *args)
    else:
        with strict_fp32():
            fp32 = _measure(lm, *args)
            lm.model.to(torch.bfloat16)
            bf16 = _measure(lm, *args)
            lm.model.to(torch.float32)
    return {"model": model, "variant": variant, "threads": torch.get_num_threads(), "notes": lm.notes,
            "fp32": fp32, "bf16": bf16, "comparison": compare(fp32, bf16)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--out", default="/tmp/precision.json")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--build-rows", type=int, default=16)
    ap.add_argument("--variant", choices=("cast", "route"), default="cast",
                    help="cast: the whole model in bf16; route: fp32 weights, oneDNN's fast route for fp32 products")
    args = ap.parse_args()
    result = run(args.model, n_pairs=args.pairs, n_build=args.build_rows, variant=args.variant)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    json.dump(result["comparison"], sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
