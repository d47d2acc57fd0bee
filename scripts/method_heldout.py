"""Held-out method comparison with the library's own honest selection: grains vs caa vs pca, scored once on unseen rows.

For each task (TruthfulQA questions as pairs; hallucination A/B pairs), vectors are built by `grains.build_vector`
from the same training rows (layer and strength chosen by its cross-validation, the gain estimated by nested
cross-validation, cells over the KL budget excluded), then scored ONCE on rows never used: MC1/MC2 (TruthfulQA) or
pair accuracy and margin, each against unsteered on the same items (exact McNemar for accuracy, sign-flip test for
MC2 / margin, with intervals), the side effects of the chosen setting, and the paired test BETWEEN methods on the same
items. The IG attributions are computed once and shared by grains and pca (the same top-k either way).

Partial results are written after every step to --out (JSON) and --markdown, labelled "partial" until the run ends;
a rerun with the same --out skips the (task, method) results already there (built vectors are saved in --vectors), and
each IG attribution is kept in --attributions as it finishes, so a stopped run resumes at the next example.

`--reference grains:14:0.5` also scores a built vector at a cell its selection did NOT choose (for example one the KL
budget excluded), labelled "reference only": it answers what the cell would have done, and is never the method's
estimate.

    python scripts/method_heldout.py --model qwen2.5-0.5b-instruct --train 100 --out /tmp/heldout.json \\
        --markdown /tmp/heldout.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grains.attribution import AttributionResult, attribute_example  # noqa: E402
from grains.build import BUILD_STEPS, build_vector  # noqa: E402
from grains.data import BUILTIN_DATASETS, load_pairs, load_truthfulqa, truthfulqa_to_pairs  # noqa: E402
from grains.encoding import encode_example  # noqa: E402
from grains.item_scoring import BatchedItems  # noqa: E402
from grains.models import load_model  # noqa: E402
from grains.side_effects import measure_side_effects  # noqa: E402
from grains.stats import margin_gain_summary, significance_summary  # noqa: E402
from grains.steering import Steering  # noqa: E402
from grains.vectors import SteeringVector, load_vector  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def task_rows(task: str, train: int, test_offset: int, test: int) -> tuple[list[Any], list[Any], str]:
    """(training pairs, held-out rows, evaluation kind)."""
    if task == "truthfulqa":
        questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"])
        held = questions[test_offset:test_offset + test]
        return truthfulqa_to_pairs(questions[:train]), held, "truthfulqa"
    pairs = load_pairs(BUILTIN_DATASETS["hallucination_pairs"])
    return pairs[:train], pairs[test_offset:test_offset + test], "pairs"


def per_item(items: list[dict[str, Any]], kind: str) -> dict[str, list[Any]]:
    out = {"correct": [bool(i["correct"]) for i in items], "margin": [float(i["margin"]) for i in items]}
    if kind == "truthfulqa":
        out["mc1"] = [float(i["mc1"]) for i in items]
        out["mc2"] = [float(i["mc2"]) for i in items]
    return out


def attribute_all(lm: Any, train: list[Any], folder: Path, task: str) -> list[AttributionResult]:
    """The build's IG attribution of every training row, each read from `folder` when a run already made it (the same
    tokens) and written there as soon as it is computed."""
    folder.mkdir(parents=True, exist_ok=True)
    out, start = [], time.perf_counter()
    for i, ex in enumerate(train):
        enc = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
        path = folder / f"{task}_{i:03d}.json"
        kept = AttributionResult.from_json(path) if path.exists() else None
        if kept is None or (kept.plus_tokens, kept.minus_tokens) != (enc.sequence_tokens("plus"),
                                                                        enc.sequence_tokens("minus")):
            kept = attribute_example(lm, enc, steps=BUILD_STEPS, target="sequence", baseline="zero",
                                     points="graded", tolerance=None)
            kept.to_json(path)
        out.append(kept)
        if i % 10 == 9:
            log(f"{task}: attribution {i + 1}/{len(train)} ({time.perf_counter() - start:.0f} s)")
    return out


def compare(a: dict[str, list[Any]], b: dict[str, list[Any]], kind: str) -> dict[str, Any]:
    """b against a on the same items: exact McNemar on accuracy (MC1), sign-flip on MC2 (or the margin)."""
    acc = significance_summary(a["correct"], b["correct"], "mcnemar")
    key = "mc2" if kind == "truthfulqa" else "margin"
    diffs = [y - x for x, y in zip(a[key], b[key])]
    cont = margin_gain_summary(diffs)
    return {"accuracy_a": acc["accuracy_unsteered"], "accuracy_b": acc["accuracy"], "accuracy_gain": acc["gain"],
            "accuracy_gain_ci": acc["gain_ci"], "accuracy_p": acc["p_value"],
            f"{key}_a": sum(a[key]) / len(a[key]), f"{key}_b": sum(b[key]) / len(b[key]),
            f"{key}_gain": cont["mean"], f"{key}_gain_ci": cont["ci"], f"{key}_p": cont["p_value"]}


def score_reference_cell(lm: Any, res: dict[str, Any], scorer: BatchedItems, task: str, cell: str,
                         vectors: Path) -> None:
    """Score the built vector of "METHOD:LAYER:STRENGTH" at that cell on the held-out items, against unsteered and
    against each method as its selection left it; kept in res["reference_cells"] (skipped when already there)."""
    method, layer, strength = cell.split(":")
    key = f"{method} at layer {int(layer)}, strength {float(strength):g}"
    if key in res.setdefault("reference_cells", {}):
        log(f"{task}: reference {key}: already done, skipped")
        return
    steering = Steering.create(lm, load_vector(vectors / f"{task}_{method}.safetensors"), int(layer), float(strength))
    items = per_item(scorer.score(steering), res["kind"])
    chosen = res["methods"].get(method, {})
    label = ("the cell this method's selection chose, scored again from the vector in the folder"
             if (chosen.get("layer"), chosen.get("strength")) == (int(layer), float(strength))
             else "reference only: a cell the selection did not choose; not an estimate of the method")
    res["reference_cells"][key] = {
        "label": label,
        "method": method, "layer": int(layer), "strength": float(strength),
        "vs_unsteered": compare(res["unsteered"], items, res["kind"]),
        "vs_chosen": {m: compare(e["items"], items, res["kind"]) for m, e in res["methods"].items() if "items" in e},
        "side_effects": measure_side_effects(lm, steering).to_dict()}
    log(f"{task}: reference {key} scored")


def run_status(out: dict[str, Any]) -> str:
    """"complete" when every task has all three methods scored, else "partial (... not scored)"."""
    missing = [f"{task}/{m}" for task, res in out["tasks"].items() for m in ("caa", "grains", "pca")
               if "vs_unsteered" not in res["methods"].get(m, {})]
    return "complete" if not missing else f"partial ({', '.join(missing)} not scored)"


def save(out: dict[str, Any], path: Path, markdown: Path | None) -> None:
    path.write_text(json.dumps(out, indent=2) + "\n")
    if markdown:
        markdown.write_text(render(out))


def render(out: dict[str, Any]) -> str:
    lines = [f"Status: **{out['status']}** (updated {out['updated']})", ""]
    for task, res in out["tasks"].items():
        kind = res.get("kind", "")
        key = "MC2" if kind == "truthfulqa" else "margin"
        k = "mc2" if kind == "truthfulqa" else "margin"
        lines += [f"### {task}: train rows {res.get('train')}, held-out rows {res.get('test')}", ""]
        if "unsteered" in res:
            u = res["unsteered"]
            lines.append(f"Unsteered: accuracy {sum(u['correct']) / len(u['correct']):.3f}, {key} "
                         f"{sum(u[k]) / len(u[k]):.3f}")
            lines.append("")
        lines.append(f"| method | layer | strength | nested CV margin gain (p) | build min | accuracy unst -> steered "
                     f"(gain, 95% CI, McNemar p) | {key} unst -> steered (gain, 95% CI, sign-flip p) | KL neutral |")
        lines.append("|---|---:|---:|---|---:|---|---|---:|")
        for method, m in res.get("methods", {}).items():
            c = m.get("vs_unsteered")
            if not c:
                lines.append(f"| {method} | {m.get('layer')} | {m.get('strength')} | (not scored yet) | | | | |")
                continue
            sel = m.get("selection") or {}
            kl = (m.get("side_effects") or {}).get("kl_mean")
            lines.append(
                f"| {method} | {m['layer']} | {m['strength']:g} | {sel.get('cv_margin_gain', 0):+.3f} "
                f"(p {sel.get('p_value', float('nan')):.2g}) | {m['build_seconds'] / 60:.1f} | "
                f"{c['accuracy_a']:.3f} -> {c['accuracy_b']:.3f} ({c['accuracy_gain']:+.3f}, "
                f"{c['accuracy_gain_ci'][0]:+.3f} to {c['accuracy_gain_ci'][1]:+.3f}, p {c['accuracy_p']:.2g}) | "
                f"{c[k + '_a']:.3f} -> {c[k + '_b']:.3f} ({c[k + '_gain']:+.3f}, {c[k + '_gain_ci'][0]:+.3f} to "
                f"{c[k + '_gain_ci'][1]:+.3f}, p {c[k + '_p']:.2g}) | "
                + (f"{kl:.3f} |" if kl is not None else "n/a |"))
        for method, m in res.get("methods", {}).items():
            b = m.get("at_best_of_n")
            if b:
                c = b["vs_unsteered"]
                lines.append(f"\n{method}: no win claimed (strength 0). For reference only, the plain CV's {b['label']}"
                             f" (layer {b['layer']}, strength {b['strength']:g}) on the held-out rows: accuracy "
                             f"{c['accuracy_a']:.3f} -> {c['accuracy_b']:.3f} (p {c['accuracy_p']:.2g}), {key} "
                             f"{c[k + '_a']:.3f} -> {c[k + '_b']:.3f} (p {c[k + '_p']:.2g}).")
        for name, r in res.get("reference_cells", {}).items():
            c, kl = r["vs_unsteered"], r["side_effects"]["kl_mean"]
            lines.append(f"\n{name} ({r['label']}): accuracy {c['accuracy_a']:.3f} "
                         f"-> {c['accuracy_b']:.3f} (p {c['accuracy_p']:.2g}), {key} {c[k + '_a']:.3f} -> "
                         f"{c[k + '_b']:.3f} (p {c[k + '_p']:.2g}), KL {kl:.3f}; against each method's chosen setting: "
                         + "; ".join(f"{m} {v['accuracy_gain']:+.3f} (p {v['accuracy_p']:.2g})"
                                     for m, v in r["vs_chosen"].items()) + ".")
        if res.get("between"):
            lines += ["", "Between methods, same held-out items (second minus first):", "",
                      f"| pair | accuracy gain (95% CI, McNemar p) | {key} gain (95% CI, sign-flip p) |",
                      "|---|---|---|"]
            for name, c in res["between"].items():
                lines.append(f"| {name} | {c['accuracy_gain']:+.3f} ({c['accuracy_gain_ci'][0]:+.3f} to "
                             f"{c['accuracy_gain_ci'][1]:+.3f}, p {c['accuracy_p']:.2g}) | {c[k + '_gain']:+.4f} "
                             f"({c[k + '_gain_ci'][0]:+.4f} to {c[k + '_gain_ci'][1]:+.4f}, p {c[k + '_p']:.2g}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--tasks", default="truthfulqa,hallucination")
    ap.add_argument("--methods", default="caa,grains,pca")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--test-offset", default="truthfulqa=100,hallucination=200")
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--out", default="/tmp/method_heldout.json")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--vectors", default="/tmp/method_heldout_vectors")
    ap.add_argument("--attributions", default="/tmp/method_heldout_attributions",
                    help="folder that keeps every IG attribution (a rerun reads them back)")
    ap.add_argument("--reference", default="",
                    help="METHOD:LAYER:STRENGTH[,...]: also score a built vector (in --vectors) at a cell its "
                         "selection did not choose, labelled reference only")
    args = ap.parse_args()
    path, markdown = Path(args.out), Path(args.markdown) if args.markdown else None
    out: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"tasks": {}}
    out.update({"status": "partial (running)", "model": args.model, "updated": time.strftime("%H:%M:%S UTC")})
    offsets = dict(item.split("=") for item in args.test_offset.split(","))
    Path(args.vectors).mkdir(parents=True, exist_ok=True)
    lm = load_model(args.model)
    for task in args.tasks.split(","):
        train, held, kind = task_rows(task, args.train, int(offsets[task]), args.test)
        res = out["tasks"].setdefault(task, {"methods": {}, "between": {}})
        res.update({"kind": kind, "train": f"0-{args.train - 1}",
                    "test": f"{offsets[task]}-{int(offsets[task]) + len(held) - 1}"})
        layers = sorted({la for m in res["methods"].values() for la in [m.get("layer")] if la is not None})
        scorer = BatchedItems(lm, held, kind, layers=layers)
        if "unsteered" not in res:
            res["unsteered"] = per_item(scorer.score(None), kind)
            save(out, path, markdown)
        attributions = None
        for method in args.methods.split(","):
            if "vs_unsteered" in res["methods"].get(method, {}):
                log(f"{task}/{method}: already done, skipped")
                continue
            if method in ("grains", "pca") and attributions is None:
                attributions = attribute_all(lm, train, Path(args.attributions), task)
                res["attribution_seconds"] = sum(a.seconds for a in attributions)  # every pass, resumed or not
            log(f"{task}/{method}: building from {len(train)} rows ...")
            start = time.perf_counter()
            last = [0.0]

            def progress(f: float, m: str, task: str = task, method: str = method, last: list = last) -> None:
                if f - last[0] >= 0.05:
                    last[0] = f
                    log(f"  {task}/{method} build {f:.0%}: {m}")

            built = build_vector(lm, train, method=method, folds=args.folds, progress=progress,
                                 attributions=attributions if method != "caa" else None)
            vector: SteeringVector = built.vector
            vector.save(Path(args.vectors) / f"{task}_{method}.safetensors")
            entry = {"layer": vector.default_layer, "strength": vector.default_strength,
                     "build_seconds": time.perf_counter() - start + (res.get("attribution_seconds", 0.0)
                                                                      if method == "grains" else 0.0),
                     "build_seconds_without_attribution": time.perf_counter() - start,
                     "selection": {k: v for k, v in (built.selection.to_dict() if built.selection else {}).items()
                                   if k != "table"},
                     "timings": built.timings}
            log(f"{task}/{method}: layer {entry['layer']}, strength {entry['strength']}, "
                f"{entry['build_seconds_without_attribution']:.0f} s")
            steering = Steering.create(lm, vector, vector.default_layer, vector.default_strength)
            # strength 0 is the unsteered model: its own items (a second scoring pass differs by float noise, ~1e-6,
            # which a sign-flip test would read as a consistent sign)
            unchanged = vector.default_strength == 0
            entry["items"] = res["unsteered"] if unchanged else per_item(scorer.score(steering), kind)
            entry["vs_unsteered"] = compare(res["unsteered"], entry["items"], kind)
            entry["side_effects"] = None if unchanged else measure_side_effects(lm, steering).to_dict()
            best = entry["selection"].get("best_of_n") or {}
            if vector.default_strength == 0 and best.get("layer") is not None and best.get("strength"):
                # no win claimed, so the honest setting is unsteered; also report the plain CV's best cell, labelled
                at_best = Steering.create(lm, vector, best["layer"], best["strength"])
                items = per_item(scorer.score(at_best), kind)
                entry["at_best_of_n"] = {"label": f"{best.get('label')} cell, chosen although no win was claimed",
                                         "layer": best["layer"], "strength": best["strength"],
                                         "vs_unsteered": compare(res["unsteered"], items, kind)}
            res["methods"][method] = entry
            done = [m for m in res["methods"] if "items" in res["methods"][m]]
            for i, a in enumerate(done):
                for b in done[i + 1:]:
                    res["between"][f"{b} vs {a}"] = compare(res["methods"][a]["items"], res["methods"][b]["items"],
                                                            kind)
            out["updated"] = time.strftime("%H:%M:%S UTC")
            save(out, path, markdown)
        for cell in filter(None, args.reference.split(",")):
            score_reference_cell(lm, res, scorer, task, cell, Path(args.vectors))
            save(out, path, markdown)
    out["status"] = run_status(out)
    out["updated"] = time.strftime("%H:%M:%S UTC")
    save(out, path, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
