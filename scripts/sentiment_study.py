"""Which method, layer and strength turn the embedded model's neutral continuations positive, fluently?

    python scripts/sentiment_study.py grid --method caa --rows 160
    python scripts/sentiment_study.py grid --method grains --rows 32 --steps 8
    python scripts/sentiment_study.py heldout
    python scripts/sentiment_study.py rescore        # recompute all measures from the saved texts
    python scripts/sentiment_study.py table          # markdown tables of what the runs saved

Gemma-3-270M base (`grains.load_model("gemma-3-270m")`, prompts used raw, as written). For each method a vector is
built from the first `--rows` shipped sentiment pairs (`build_vector(..., select=False)`), then:

- `grid` (selection): greedy 30-token continuations of `--prompts` neutral prompts taken from
  assets/data/neutral_prompts.jsonl (every third row), at every layer 6..12 x strength 0.1..0.6 and unsteered.
  A cell is *selectable* when distinct-2 of its continuations is at least 0.8x the unsteered and no more of them
  are stuck in a repeated 4-gram (grains.fluency) than the larger of 10% and the unsteered share (the base model's
  greedy text loops by itself); the pick is the selectable cell with the highest mean VADER gain.
  That gain is a best of N (42 cells by default) and is biased upwards, so it is not the estimate.
- `heldout` (estimate): each method's pick, on the 40 held-out neutral prompts (assets/data/
  neutral_prompts_heldout.jsonl, never used to build or pick a cell), with the mean gain, a 95% bootstrap interval,
  the exact sign test and the fluency measures (one JSON file per method; the picks share one generate call
  per prompt with the unsteered row). Comparing the methods' figures here is how CAA was chosen over GrAInS for the
  default vector, so these prompts took part in that choice: the default vector's own held-out figure is measured
  on assets/data/neutral_prompts_unseen.jsonl instead (scripts/build_default_vector.py). The first three prompts
  are also generated through `grains.generate_pair` and compared with the batched texts.

Speed: a generate call per prompt holds the unsteered row and one row per cell (the library's `grains.steering.steer`
hook on that row only, via its `rows` mask), so one prompt costs one batched generation instead of 42 paired ones;
the rows never see each other, and the texts equal `generate_pair`'s (checked in `heldout`). Run time on 1 CPU thread
of a shared 2-core machine: CAA build 160 rows ~3 min, GrAInS build 32 rows at 8 IG steps ~8 min, grid ~85 s per
prompt, held-out ~10 min. Results go to `--workdir` as JSON (vectors as safetensors, rebuilt when missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "assets" / "data"
LAYERS = list(range(6, 13))
STRENGTHS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
NEW_TOKENS = 30
MIN_GAIN, MAX_P, MIN_DISTINCT_RATIO, MAX_STUCK = 0.3, 0.01, 0.8, 0.10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_prompts(name: str) -> list[str]:
    return [json.loads(line)["prompt"] for line in (DATA / name).read_text().splitlines() if line.strip()]


def selection_prompts(count: int) -> list[str]:
    """Every third row of the side-effect prompts (a spread of topics), first `count` of them."""
    return read_prompts("neutral_prompts.jsonl")[::3][:count]


def load_lm() -> Any:
    import grains

    lm = grains.load_model("gemma-3-270m")
    lm.prompt_style = "raw"  # the prompt is what the model sees
    return lm


def vector_for(lm: Any, method: str, rows: int, steps: int, workdir: Path) -> Any:
    """The method's vector from the first `rows` sentiment pairs, cached in workdir."""
    import grains

    path = workdir / f"{method}_rows{rows}_steps{steps}.safetensors"
    if path.exists():
        return grains.load_vector(path)
    pairs = grains.load_pairs(DATA / "sentiment_pairs.jsonl", limit=rows)
    start = time.perf_counter()
    built = grains.build_vector(lm, pairs, method=method, steps=steps, select=False)
    log(f"built {method} from {rows} pairs in {time.perf_counter() - start:.0f} s")
    built.vector.meta.update({"concept": "sentiment", "dataset": "sentiment_pairs (shipped)", "rows": f"0-{rows - 1}",
                              "built_by": "scripts/sentiment_study.py"})
    built.vector.save(path)
    return grains.load_vector(path)


def generate_cells(lm: Any, prompt: str, vector: Any, cells: list[tuple[int, float]]) -> list[str]:
    """Greedy continuations of `prompt`: row 0 unsteered, row i steered at cells[i-1], all in one generate call."""
    return generate_rows(lm, prompt, [(vector, layer, strength) for layer, strength in cells])


def generate_rows(lm: Any, prompt: str, steerings: list[tuple[Any, int, float]]) -> list[str]:
    """Row 0 unsteered, row i steered with steerings[i-1] = (vector, layer, strength), in one generate call."""
    import torch

    from grains.steering import steer

    enc = lm.encode_prompt(prompt)
    batch = len(steerings) + 1
    ids = torch.tensor([enc.ids] * batch, dtype=torch.long)
    with lm.lock, ExitStack() as stack, torch.no_grad():
        for i, (vector, layer, strength) in enumerate(steerings):
            rows = [False] * batch
            rows[i + 1] = True
            stack.enter_context(steer(lm, vector, layer, strength, rows=rows))
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                do_sample=False, temperature=None, top_p=None, top_k=None,
                                pad_token_id=lm.tokenizer.pad_token_id)
    return [lm.tokenizer.decode(row[len(enc.ids):], skip_special_tokens=True) for row in out]


def measure(unsteered: list[str], steered: list[str], tokenizer: Any) -> dict[str, Any]:
    """Gain (VADER, sign test) and fluency (distinct-2 ratio, stuck share in words and in model tokens)."""
    from grains.fluency import fluency_report, repeated_ngram_share
    from grains.sentiment import sentiment_gain

    gain = sentiment_gain(unsteered, steered)
    flu = fluency_report(unsteered, steered)
    out = {**gain.to_dict(), **{f"fluency_{k}": v for k, v in flu.to_dict().items()}}
    out["stuck_tokens_unsteered"] = repeated_ngram_share(unsteered, 4, tokenizer=tokenizer)
    out["stuck_tokens_steered"] = repeated_ngram_share(steered, 4, tokenizer=tokenizer)
    ratio = flu.distinct_ratio
    out["fluent"] = ratio is not None and ratio >= MIN_DISTINCT_RATIO and flu.stuck_steered <= MAX_STUCK
    out["meets_target"] = out["fluent"] and gain.mean_gain >= MIN_GAIN and gain.p_value < MAX_P
    return out


def selectable(cell: dict[str, Any]) -> bool:
    """Fluent enough to be picked: distinct-2 >= 0.8x unsteered, and no more outputs stuck than the larger of 10%
    and the unsteered share (greedy base-model text often loops by itself; steering must not add loops)."""
    ratio = cell["fluency_distinct_ratio"]
    return (ratio is not None and ratio >= MIN_DISTINCT_RATIO
            and cell["fluency_stuck_steered"] <= max(MAX_STUCK, cell["fluency_stuck_unsteered"]))


def pick_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The selectable cell with the highest mean gain (a best of len(cells)), or None."""
    eligible = [c for c in cells if selectable(c)]
    return max(eligible, key=lambda c: c["mean_gain"]) if eligible else None


def run_grid(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lm = load_lm()
    vector = vector_for(lm, args.method, args.rows, args.steps, workdir)
    prompts = selection_prompts(args.prompts)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else LAYERS
    strengths = [float(x) for x in args.strengths.split(",")] if args.strengths else STRENGTHS
    cells = [(layer, s) for layer in layers for s in strengths]
    partial = workdir / f"grid_{args.method}.partial.json"
    texts: list[list[str]] = []
    if partial.exists():  # resume an interrupted run with the same vector, prompts and cells
        saved = json.loads(partial.read_text())
        if saved["key"] == [args.rows, args.steps, prompts, [list(c) for c in cells]]:
            texts = saved["texts"]
            log(f"resuming after {len(texts)} prompts")
    start = time.perf_counter()
    for i, prompt in enumerate(prompts[len(texts):], start=len(texts)):
        texts.append(generate_cells(lm, prompt, vector, cells))
        partial.write_text(json.dumps({"key": [args.rows, args.steps, prompts, cells], "texts": texts}))
        log(f"grid {args.method}: prompt {i + 1}/{len(prompts)} ({time.perf_counter() - start:.0f} s)")
    unsteered = [t[0] for t in texts]
    results = []
    for j, (layer, strength) in enumerate(cells):
        steered = [t[j + 1] for t in texts]
        results.append({"layer": layer, "strength": strength, **measure(unsteered, steered, lm.tokenizer)})
    pick = pick_cell(results)
    out = {"method": args.method, "rows": args.rows, "steps": args.steps, "prompts": prompts, "cells": results,
           "pick": None if pick is None else {"layer": pick["layer"], "strength": pick["strength"]},
           "texts": texts, "cell_order": cells, "seconds": round(time.perf_counter() - start)}
    path = workdir / f"grid_{args.method}.json"
    path.write_text(json.dumps(out, indent=1))
    log(f"saved {path}; pick {out['pick']}")
    return 0


def run_heldout(args: argparse.Namespace) -> int:
    import torch

    import grains

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    lm = load_lm()
    prompts = read_prompts("neutral_prompts_heldout.jsonl")
    picks = []
    for method in args.methods.split(","):
        path = workdir / f"grid_{method}.json"
        if not path.exists():
            log(f"{method}: no grid results; skipped")
            continue
        grid = json.loads(path.read_text())
        pick = pick_cell(grid["cells"])  # recomputed, so the rule here is the one that counts
        if pick is None:
            log(f"{method}: no selectable cell in the grid; nothing to evaluate")
            continue
        vector = vector_for(lm, method, grid["rows"], grid["steps"], workdir)
        picks.append((method, grid, vector, pick["layer"], pick["strength"]))
        for extra in filter(None, args.extra.split(",")):  # named second cells, reported apart from the pick
            layer, strength = extra.split(":")
            picks.append((f"{method}@{layer}:{strength}", grid, vector, int(layer), float(strength)))
    # every method's pick rides in the same generate call as one unsteered row: the prompts' texts are shared
    texts = []
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        texts.append(generate_rows(lm, prompt, [(v, layer, s) for _, _, v, layer, s in picks]))
        log(f"held-out: prompt {i + 1}/{len(prompts)} ({time.perf_counter() - start:.0f} s)")
    backup = workdir / f"heldout_texts_{args.methods.replace(',', '_')}.json"
    backup.write_text(json.dumps({"picks": [p[0] for p in picks], "texts": texts}))
    unsteered = [t[0] for t in texts]
    for k, (method, grid, vector, layer, strength) in enumerate(picks):
        steered = [t[k + 1] for t in texts]
        checks = []
        for prompt, batched in zip(prompts[: args.check], texts):
            pair = grains.generate_pair(lm, prompt, vector, layer=layer, strength=strength,
                                        settings=grains.GenerationSettings(max_new_tokens=NEW_TOKENS))
            checks.append(pair.unsteered == batched[0] and pair.steered == batched[k + 1])
        result = {"method": method, "layer": layer, "strength": strength, "rows": grid["rows"],
                  "steps": grid["steps"], **measure(unsteered, steered, lm.tokenizer),
                  "generate_pair_matches": f"{sum(checks)}/{len(checks)}", "prompts": prompts,
                  "unsteered": unsteered, "steered": steered}
        path = workdir / f"heldout_{method.replace('@', '_at_').replace(':', '_')}.json"
        path.write_text(json.dumps(result, indent=1))
        log(f"saved {path}")
    return 0


def run_rescore(args: argparse.Namespace) -> int:
    """Recompute every measure from the saved texts with the current grains.fluency / grains.sentiment code."""
    workdir = Path(args.workdir)
    tokenizer = load_lm().tokenizer  # for the stuck share in model tokens
    for path in sorted(workdir.glob("grid_*.json")):
        if path.name.endswith(".partial.json"):
            continue
        grid = json.loads(path.read_text())
        unsteered = [t[0] for t in grid["texts"]]
        grid["cells"] = [{"layer": layer, "strength": strength,
                          **measure(unsteered, [t[j + 1] for t in grid["texts"]], tokenizer)}
                         for j, (layer, strength) in enumerate(grid["cell_order"])]
        pick = pick_cell(grid["cells"])
        grid["pick"] = None if pick is None else {"layer": pick["layer"], "strength": pick["strength"]}
        path.write_text(json.dumps(grid, indent=1))
        log(f"rescored {path.name}: pick {grid['pick']}")
    for path in sorted(workdir.glob("heldout_*.json")):
        if path.name.startswith("heldout_texts"):
            continue
        result = json.loads(path.read_text())
        result.update(measure(result["unsteered"], result["steered"], tokenizer))
        path.write_text(json.dumps(result, indent=1))
        log(f"rescored {path.name}")
    return 0


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def run_table(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    for method in args.methods.split(","):
        path = workdir / f"grid_{method}.json"
        if not path.exists():
            continue
        grid = json.loads(path.read_text())
        n = len(grid["prompts"])
        steps = f", IG steps {grid['steps']}" if method == "grains" else ""
        pick = pick_cell(grid["cells"])
        where = "none" if pick is None else f"layer {pick['layer']}, strength {pick['strength']:g}"
        print(f"\n#### {method} (built from pairs 0-{grid['rows'] - 1}{steps}; {n} selection prompts; "
              f"{len(grid['cells'])} cells; pick: {where})\n")
        print("| layer | strength | mean gain | up / down / tie | sign p | distinct-2 ratio | stuck (words) "
              "| stuck (tokens) | selectable |")
        print("| ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | :---: |")
        for r in grid["cells"]:
            print(f"| {r['layer']} | {r['strength']:g} | {r['mean_gain']:+.2f} | "
                  f"{r['positive']}/{r['negative']}/{r['ties']} | {_p(r['p_value'])} | "
                  f"{_fmt(r['fluency_distinct_ratio'])} | {r['fluency_stuck_steered']:.0%} | "
                  f"{r['stuck_tokens_steered']:.0%} | {'yes' if selectable(r) else 'no'} |")
        u = grid["cells"][0]
        print(f"\nUnsteered: mean VADER {u['mean_unsteered']:+.2f}, distinct-2 "
              f"{u['fluency_distinct_unsteered']:.2f}, stuck {u['fluency_stuck_unsteered']:.0%} (words), "
              f"{u['stuck_tokens_unsteered']:.0%} (tokens).")
    held = [json.loads(p.read_text()) for m in args.methods.split(",")
            for p in sorted(workdir.glob(f"heldout_{m}*.json")) if not p.name.startswith("heldout_texts")]
    if held:
        print(f"\n#### Held-out ({len(held[0]['prompts'])} prompts)\n")
        print("| method | layer | strength | mean VADER unsteered -> steered | gain [95% CI] | up / down / tie "
              "| sign p | distinct-2 (unst., steered, ratio) | stuck words (unst. -> steered) | stuck tokens "
              "| meets target | generate_pair check |")
        print("| --- | ---: | ---: | :---: | :---: | :---: | ---: | :---: | :---: | :---: | :---: | :---: |")
        for r in held:
            print(f"| {r['method']} | {r['layer']} | {r['strength']:g} | {r['mean_unsteered']:+.2f} -> "
                  f"{r['mean_steered']:+.2f} | {r['mean_gain']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | "
                  f"{r['positive']}/{r['negative']}/{r['ties']} | {_p(r['p_value'])} | "
                  f"{r['fluency_distinct_unsteered']:.2f}, {r['fluency_distinct_steered']:.2f}, "
                  f"{_fmt(r['fluency_distinct_ratio'])} | {r['fluency_stuck_unsteered']:.0%} -> "
                  f"{r['fluency_stuck_steered']:.0%} | {r['stuck_tokens_unsteered']:.0%} -> "
                  f"{r['stuck_tokens_steered']:.0%} | {'yes' if r['meets_target'] else 'no'} | "
                  f"{r['generate_pair_matches']} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/grains_sentiment_study", help="where results and vectors go")
    sub = parser.add_subparsers(dest="stage", required=True)
    grid = sub.add_parser("grid", help="layer x strength grid on the selection prompts")
    grid.add_argument("--method", choices=["caa", "grains"], required=True)
    grid.add_argument("--rows", type=int, default=160, help="first N sentiment pairs build the vector")
    grid.add_argument("--steps", type=int, default=8, help="IG steps (grains only)")
    grid.add_argument("--layers", default="", help="comma-separated layers (default 6..12)")
    grid.add_argument("--strengths", default="", help="comma-separated strengths (default 0.1..0.6)")
    grid.add_argument("--prompts", type=int, default=16, help="selection prompts (every third neutral prompt)")
    held = sub.add_parser("heldout", help="each method's pick on the held-out neutral prompts")
    held.add_argument("--methods", default="caa,grains")
    held.add_argument("--extra", default="", help="also evaluate these cells, e.g. 11:0.3 (not picks: label them)")
    held.add_argument("--check", type=int, default=3, help="prompts also run through grains.generate_pair")
    sub.add_parser("rescore", help="recompute the measures of saved results from their texts")
    table = sub.add_parser("table", help="print the saved results as markdown")
    table.add_argument("--methods", default="caa,grains")
    args = parser.parse_args()
    return {"grid": run_grid, "heldout": run_heldout, "rescore": run_rescore, "table": run_table}[args.stage](args)


if __name__ == "__main__":
    raise SystemExit(main())
