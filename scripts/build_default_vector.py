"""Build the steering vector shipped for the embedded model: assets/default_vector.safetensors (+ .json).

    python scripts/build_default_vector.py [--rows 160] [--method caa] [--out assets/default_vector.safetensors]

Concept: sentiment (positive). Built from the first `--rows` pairs of assets/data/sentiment_pairs.jsonl (raw prompts,
positive vs negative continuation), layer and strength chosen by the library's honest selection: cross-validation
among the cells within the side-effect budget (KL on all 60 neutral prompts, the same prompts the side effects are
reported on), a win claimed only when the held-out claim split's paired test says so. Then evaluated on data that
took part in no choice, and the figures stored in the vector's metadata (`heldout_evaluation`, with `data_used`
saying which choice was made on which data), which the app's vector card shows:
- the remaining sentiment pairs (pairwise accuracy, McNemar, margin), with side effects;
- free continuations of the 40 unseen neutral prompts (assets/data/neutral_prompts_unseen.jsonl, written for this
  step and used by nothing else): greedy, 30 new tokens, VADER compound gain steered minus unsteered with a sign
  test, distinct-2 and the stuck share. (neutral_prompts_heldout.jsonl chose CAA over GrAInS in
  scripts/sentiment_study.py, so it is no longer unseen.)

Why CAA and not the GrAInS default: on this base model a GrAInS vector built from sentiment pairs moved held-out
continuations the wrong way (VADER -0.27, docs/sentiment_study.md) while CAA moved them +0.5 to +0.6; the tool ships
what works on this model and says so in the metadata.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
UNSEEN_PROMPTS = "assets/data/neutral_prompts_unseen.jsonl"


def data_used(rows: int, n_test: int) -> dict[str, str]:
    """Which choice was made on which data (stored in the metadata and shown in the README)."""
    return {
        "vector": f"sentiment_pairs rows 0-{rows - 1}",
        "layer_and_strength": f"sentiment_pairs rows 0-{rows - 1} (cross-validation; win claim on a held-out half)",
        "side_effect_budget": "assets/data/neutral_prompts.jsonl (all 60; the reported side effects use the same)",
        "method_caa_over_grains": "assets/data/neutral_prompts_heldout.jsonl continuations and sentiment_pairs "
                                  "(scripts/sentiment_study.py, docs/sentiment_study.md)",
        "heldout_pairs": f"sentiment_pairs rows {rows}-{rows + n_test - 1}: no choice",
        "heldout_continuations": f"{UNSEEN_PROMPTS}: no choice (written after every choice above)",
    }


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def heldout_continuations(lm, steering, prompts: list[str], max_new_tokens: int) -> dict:
    """VADER gain and fluency of greedy continuations of unseen neutral prompts, steered against unsteered."""
    from grains.fluency import fluency_report
    from grains.generation import GenerationSettings, generate_pair
    from grains.sentiment import sentiment_gain

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    pairs = [generate_pair(lm, p, steering, settings=settings) for p in prompts]
    unsteered, steered = [p.unsteered for p in pairs], [p.steered for p in pairs]
    return {"prompts": UNSEEN_PROMPTS, "n": len(prompts), "decoding": "greedy",
            "max_new_tokens": max_new_tokens, "vader": sentiment_gain(unsteered, steered).to_dict(),
            "fluency": fluency_report(unsteered, steered).to_dict(),
            "examples": [{"prompt": p, "unsteered": u, "steered": s}
                         for p, u, s in zip(prompts[:4], unsteered[:4], steered[:4])]}


def main() -> int:
    from grains.build import build_vector
    from grains.data import BUILTIN_DATASETS, load_pairs
    from grains.evaluation import evaluate
    from grains.models import load_model
    from grains.side_effects import load_neutral_prompts
    from grains.steering import Steering

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--rows", type=int, default=160, help="build from sentiment pairs 0..rows-1")
    parser.add_argument("--method", default="caa")
    parser.add_argument("--layers", default="6,7,8,9,10,11,12")
    parser.add_argument("--strengths", default="0.1,0.2,0.3,0.4")
    parser.add_argument("--kl-budget", type=float, default=0.5)
    parser.add_argument("--search", default="coarse", choices=["coarse", "grid"])
    parser.add_argument("--eval-rows", type=int, default=None, help="held-out pairs to score (default: all left)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "assets" / "default_vector.safetensors"))
    args = parser.parse_args()

    lm = load_model(args.model, prompt_format="raw")
    path = BUILTIN_DATASETS["sentiment_pairs"]
    train = load_pairs(path, limit=args.rows)
    test = load_pairs(path, offset=args.rows, limit=args.eval_rows)
    start = time.perf_counter()
    result = build_vector(lm, train, method=args.method, layers=_ints(args.layers), strengths=_floats(args.strengths),
                          kl_budget=args.kl_budget, search=args.search, select=True, folds=3,
                          progress=lambda f, m: print(f"[{f:5.0%}] {m}", file=sys.stderr, flush=True))
    vector = result.vector
    print(f"built in {time.perf_counter() - start:.0f} s: layer {vector.default_layer}, strength "
          f"{vector.default_strength:g}. {vector.meta.get('note', '')}", file=sys.stderr, flush=True)
    heldout: dict = {"pairs": f"sentiment_pairs rows {args.rows}-{args.rows + len(test) - 1} (not used to build)"}
    if vector.default_strength != 0:
        steering = Steering.create(lm, vector, vector.default_layer, vector.default_strength)
        scored = evaluate(lm, test, "pairs", steering, side_effects=True).to_dict()
        heldout["pair_evaluation"] = {k: scored[k] for k in ("n", "accuracy", "accuracy_unsteered", "margin",
                                                             "margin_unsteered", "gain", "gain_ci", "p_value",
                                                             "reading", "side_effects")}
        heldout["continuations"] = heldout_continuations(
            lm, steering, load_neutral_prompts(ROOT / UNSEEN_PROMPTS),
            args.max_new_tokens)
    else:
        heldout["note"] = "The selection suggests strength 0: nothing to evaluate; the model did not move."
    vector.meta.update({"concept": "sentiment", "direction": "positive", "dataset": "sentiment_pairs (shipped)",
                        "rows": f"0-{args.rows - 1}", "held_out_from": args.rows,
                        "built_by": "scripts/build_default_vector.py", "heldout_evaluation": heldout,
                        "data_used": data_used(args.rows, len(test)),
                        "method_note": "CAA: the GrAInS direction did not move sentiment on this model "
                                       "(docs/sentiment_study.md)" if args.method == "caa" else ""})
    out = vector.save(args.out)
    cont = heldout.get("continuations", {})
    if cont:
        v, f = cont["vader"], cont["fluency"]
        print(f"held out: VADER {v['mean_unsteered']:+.2f} -> {v['mean_steered']:+.2f} (gain {v['mean_gain']:+.2f}, "
              f"95% CI {v['ci_low']:+.2f} to {v['ci_high']:+.2f}, sign test p = {v['p_value']:.2g}); distinct-2 "
              f"{f['distinct_ratio']:.2f}x; stuck {f['stuck_unsteered']:.0%} -> {f['stuck_steered']:.0%}")
        print("pairs:", heldout["pair_evaluation"]["reading"], "| side effects:",
              heldout["pair_evaluation"]["side_effects"]["reading"])
    print(f"saved {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
