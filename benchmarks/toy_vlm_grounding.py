"""Heatmaps against ground truth on held-out toy scenes: for "Is there a X?" with X present, the contrastive patch
heatmap (IG of log P(Yes) - log P(No), `grains.vlm.check.where_the_model_looked`) scored against X's true box:
relevance mass accuracy (share of the positive patch mass inside the box, CLEVR-XAI), the pointing game (top patch
touches the box), each next to what a heatmap blind to the picture scores (the box's area share; the share of
patches touching the box). For each planted-pair probe (A present, B absent, asked about B) the model says "yes" to,
the share of the evidence toward "yes" (the negative side of the truthful heatmap) that sits on A's box, next to A's
area share.

Scenes come from the held-out seeds (1,000,000,000 on, the UNBIASED distribution; docs/toy_vlm.md), never used in
training. Run through the shared machine's queue, one thread:

    OMP_NUM_THREADS=1 /work/bin/heavy python benchmarks/toy_vlm_grounding.py --model toy-vlm-shapes --n 200

Prints a markdown table and writes one JSON object (--out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELDOUT_SEED = 1_000_000_000


def poisson_binomial_upper(hits: int, chances: list[float]) -> float:
    """P(at least `hits` successes) when trial i succeeds with probability chances[i], independently (exact)."""
    dist = np.array([1.0])
    for c in chances:
        dist = np.convolve(dist, [1.0 - c, c])
    return float(min(1.0, dist[hits:].sum()))


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def mean_vs_baseline(values: list[float], baselines: list[float]) -> dict[str, Any]:
    """Mean of values and of baselines, their paired difference with the sign-flip interval and test."""
    from grains.stats import sign_flip_interval, sign_flip_test

    diffs = [v - b for v, b in zip(values, baselines)]
    if not diffs:
        return {"n": 0}
    low, high = sign_flip_interval(diffs)
    return {"n": len(diffs), "mean": float(np.mean(values)), "baseline": float(np.mean(baselines)),
            "difference": float(np.mean(diffs)), "difference_ci": [low, high], "p_value": sign_flip_test(diffs),
            "ratio": float(np.mean(values) / np.mean(baselines)) if np.mean(baselines) > 0 else None}


def run(model: str, n_present: int, steps: int, first_seed: int, max_hallucinated: int) -> dict[str, Any]:
    import torch

    import grains
    from grains.vlm.check import where_the_model_looked
    from grains.vlm.grounding import score_box
    from grains.vlm.pope import score_yes_no
    from grains.vlm.toy.probes import scene_probes
    from grains.vlm.toy.scenes import PLANTED_PAIRS, UNBIASED, make_scene

    torch.set_num_threads(1)
    lm = grains.load_model(model)
    partner_of = {b: a for a, b in PLANTED_PAIRS}
    present_rows: list[dict[str, Any]] = []
    planted_rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    seed = first_seed
    while len(present_rows) < n_present:
        scene = make_scene(seed, UNBIASED)
        boxes = {o.kind: o.box for o in scene.objects}
        for row in scene_probes(scene, f"scene_{seed}.png", settings=("present", "adversarial")):
            kind = row["object"]
            if row["setting"] == "present" and len(present_rows) < n_present:
                look = where_the_model_looked(lm, scene.image, kind, truth="yes", steps=steps)
                crop = (look.result.extra or {}).get("crop_box") or [0, 0, *scene.image.size]
                s = score_box(look.grid, crop, boxes[kind])
                lp_yes, lp_no = score_yes_no(lm, scene.image, row["question"])
                present_rows.append({"seed": seed, "object": kind, "box": list(boxes[kind]), **s.to_dict(),
                                     "says_yes": lp_yes > lp_no, "converged": look.converged,
                                     "relative_delta": look.result.relative_delta})
            elif (row["setting"] == "adversarial" and partner_of.get(kind) in boxes
                  and len([r for r in planted_rows if r["said_yes"]]) < max_hallucinated):
                a = partner_of[kind]
                lp_yes, lp_no = score_yes_no(lm, scene.image, row["question"])
                entry: dict[str, Any] = {"seed": seed, "object": kind, "partner": a, "said_yes": lp_yes > lp_no,
                                         "p_yes": float(np.exp(lp_yes) / (np.exp(lp_yes) + np.exp(lp_no)))}
                if entry["said_yes"]:
                    look = where_the_model_looked(lm, scene.image, kind, truth="no", steps=steps)
                    crop = (look.result.extra or {}).get("crop_box") or [0, 0, *scene.image.size]
                    s = score_box(look.grid, crop, boxes[a])
                    others = [score_box(look.grid, crop, boxes[k]) for k in boxes if k != a]
                    entry.update({"yes_mass_on_partner": s.negative_mass_inside, "partner_area_share": s.area_share,
                                  "yes_mass_on_other_objects": float(sum(o.negative_mass_inside or 0 for o in others)),
                                  "other_objects_area_share": float(sum(o.area_share for o in others)),
                                  "truth_mass_on_partner": s.mass_inside, "converged": look.converged})
                planted_rows.append(entry)
        seed += 1
    seconds = time.perf_counter() - start

    scored = [r for r in present_rows if r["mass_inside"] is not None]
    pointed = [r for r in present_rows if r["pointing_hit"] is not None]
    hits = sum(bool(r["pointing_hit"]) for r in pointed)
    hallucinated = [r for r in planted_rows if r["said_yes"] and r.get("yes_mass_on_partner") is not None]
    summary = {
        "model": model, "steps": steps, "scenes": [first_seed, seed - 1], "distribution": "unbiased (held out)",
        "n_present_probes": len(present_rows), "seconds": seconds,
        "converged_share": float(np.mean([r["converged"] for r in present_rows])),
        "present_said_yes": float(np.mean([r["says_yes"] for r in present_rows])),
        "mass_accuracy": mean_vs_baseline([r["mass_inside"] for r in scored], [r["area_share"] for r in scored]),
        "mass_accuracy_no_positive_mass": len(present_rows) - len(scored),
        "pointing_game": {"n": len(pointed), "hits": hits, "rate": hits / len(pointed) if pointed else None,
                          "rate_ci": list(wilson(hits, len(pointed))),
                          "chance": float(np.mean([r["pointing_chance"] for r in pointed])) if pointed else None,
                          "p_value": poisson_binomial_upper(hits, [r["pointing_chance"] for r in pointed])},
        "planted_probes": len(planted_rows),
        "planted_said_yes": sum(r["said_yes"] for r in planted_rows),
        "hallucinated_yes_mass_on_partner": mean_vs_baseline([r["yes_mass_on_partner"] for r in hallucinated],
                                                             [r["partner_area_share"] for r in hallucinated]),
        "hallucinated_converged_share": (float(np.mean([r["converged"] for r in hallucinated]))
                                         if hallucinated else None),
        "present_rows": present_rows, "planted_rows": planted_rows,
    }
    return summary


def table(s: dict[str, Any]) -> str:
    """The markdown table of a summary."""
    m, p, h = s["mass_accuracy"], s["pointing_game"], s["hallucinated_yes_mass_on_partner"]

    def ci(pair: list[float]) -> str:
        return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"

    lines = [f"Model {s['model']}, held-out scenes {s['scenes'][0]}-{s['scenes'][1]} ({s['distribution']}), IG "
             f"{s['steps']} points; {s['converged_share']:.0%} of the present-probe heatmaps converged; the model "
             f"said yes to {s['present_said_yes']:.0%} of the present objects.", "",
             "| measure | n | heatmap | random heatmap | difference (95% CI) | p | ratio |",
             "|---|---|---|---|---|---|---|"]
    if m.get("n"):
        lines.append(f"| relevance mass inside the asked object's box | {m['n']} | {m['mean']:.3f} | "
                     f"{m['baseline']:.3f} (box area share) | {m['difference']:+.3f} {ci(m['difference_ci'])} | "
                     f"{m['p_value']:.2g} (sign flip) | {m['ratio']:.2f}x |")
    if p["n"]:
        lines.append(f"| pointing game (top patch touches the box) | {p['n']} | {p['rate']:.3f} "
                     f"(Wilson {p['rate_ci'][0]:.3f}-{p['rate_ci'][1]:.3f}) | {p['chance']:.3f} (patches touching "
                     f"the box) | {p['rate'] - p['chance']:+.3f} | {p['p_value']:.2g} (exact) | "
                     f"{p['rate'] / p['chance']:.2f}x |")
    if h.get("n"):
        lines.append(f"| hallucinated B: 'yes' evidence on A's box | {h['n']} | {h['mean']:.3f} | {h['baseline']:.3f} "
                     f"(A's area share) | {h['difference']:+.3f} {ci(h['difference_ci'])} | {h['p_value']:.2g} "
                     f"(sign flip) | {h['ratio']:.2f}x |")
    else:
        lines.append("| hallucinated B: 'yes' evidence on A's box | 0 | - | - | - | - | - |")
    lines.append("")
    lines.append(f"Planted-pair probes (A present, B absent, asked about B): {s['planted_probes']}, said yes to "
                 f"{s['planted_said_yes']}. {s['mass_accuracy_no_positive_mass']} present probes had no positive "
                 "patch mass (left out of the mass row).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy-vlm-shapes")
    parser.add_argument("--n", type=int, default=200, help="present probes to score")
    parser.add_argument("--steps", type=int, default=16, help="IG points")
    parser.add_argument("--first-seed", type=int, default=HELDOUT_SEED)
    parser.add_argument("--max-hallucinated", type=int, default=100,
                        help="stop attributing hallucinated planted probes after this many")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_vlm_grounding.json"))
    args = parser.parse_args(argv)
    try:
        summary = run(args.model, args.n, args.steps, args.first_seed, args.max_hallucinated)
    except Exception as exc:  # noqa: BLE001 - one line for a benchmark's user
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
