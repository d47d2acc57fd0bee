"""Does the toy VLM really hallucinate the planted partner? POPE metrics and the planted false-yes rate on held-out
scenes, the biased model next to its control, through the library's own path (grains.load_model, evaluate_probes,
probe_metrics).

    python benchmarks/toy_vlm_hallucination.py --n-scenes 300 [--json out.json]

Held-out scenes are drawn from the UNBIASED distribution at seeds 1,000,000,000 + i (never used in training), and
probed as `python -m grains scenes` probes them (present; random, popular and adversarial absent). Each distinct
(scene, object) question is answered once per model (the same absent object may serve several settings).
Reported, per model: accuracy on present and absent probes; POPE accuracy, precision, recall, F1 and yes-ratio per
setting; and the false-yes rate on a planted partner B when its A is present and B absent, against the false-yes rate
on the other absent objects of the same scenes, on B when A is absent too, and against the control model on the same
questions (exact McNemar on the paired answers). Rates carry 95% Clopper-Pearson intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT_START = 1_000_000_000
MODELS = ("toy-vlm-shapes", "toy-vlm-shapes-control")


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact 95% interval of a binomial proportion k / n."""
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return (float(ci.low), float(ci.high))


def rate(flags: list[bool]) -> dict[str, Any]:
    """k / n with its interval."""
    k, n = sum(flags), len(flags)
    low, high = clopper_pearson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci95": [low, high]}


def probe_set(n_scenes: int, first_seed: int) -> tuple[list[dict[str, Any]], dict[tuple[int, str], Any]]:
    """The probe rows of held-out scenes, and one question per distinct (scene seed, object) with its image."""
    from grains.vlm.toy.probes import scene_probes
    from grains.vlm.toy.scenes import UNBIASED, make_scene

    rows, questions = [], {}
    for seed in range(first_seed, first_seed + n_scenes):
        scene = make_scene(seed, UNBIASED)
        for row in scene_probes(scene, f"scene_{seed}.png"):
            row["present_kinds"] = scene.kinds
            rows.append(row)
            questions.setdefault((seed, row["object"]), {"image": scene.image, "question": row["question"],
                                                          "answer": row["answer"], "object": row["object"]})
    return rows, questions


def answer_all(model: str, questions: dict[tuple[int, str], Any]) -> tuple[dict[tuple[int, str], str], float]:
    """The model's yes/no answer to every question (grains.vlm.pope.evaluate_probes), and the seconds it took."""
    import grains
    from grains.vlm.pope import evaluate_probes

    lm = grains.load_model(model)
    keys = list(questions)
    start = time.perf_counter()
    result = evaluate_probes(lm, [questions[k] for k in keys])
    return {k: item["answer"] for k, item in zip(keys, result["items"])}, time.perf_counter() - start


def tables(rows: list[dict[str, Any]], answers: dict[tuple[int, str], str]) -> dict[str, Any]:
    """Present/absent accuracy, POPE metrics per setting and the planted false-yes rates of one model."""
    from grains.vlm.pope import probe_metrics
    from grains.vlm.toy.probes import ABSENT_SETTINGS, setting_rows
    from grains.vlm.toy.scenes import PLANTED_PAIRS

    def said(row: dict[str, Any]) -> str:
        return answers[(row["scene_seed"], row["object"])]

    out: dict[str, Any] = {"present": rate([said(r) == "yes" for r in rows if r["setting"] == "present"])}
    for setting in ABSENT_SETTINGS:
        out[f"absent_{setting}"] = rate([said(r) == "no" for r in rows if r["setting"] == setting])
        split = setting_rows(rows, setting)
        metrics = probe_metrics([said(r) for r in split], [r["answer"] for r in split])
        out[f"pope_{setting}"] = metrics
    # every distinct absent question once, split by whether it is a planted B with its A present
    seen, planted, b_alone, other = set(), [], [], []
    partners = dict(PLANTED_PAIRS)
    for r in rows:
        key = (r["scene_seed"], r["object"])
        if r["answer"] != "no" or key in seen:
            continue
        seen.add(key)
        yes = said(r) == "yes"
        if any(partners.get(k) == r["object"] for k in r["present_kinds"]):
            planted.append((key, yes))
        elif r["object"] in partners.values():
            b_alone.append((key, yes))
        else:
            other.append((key, yes))
    out["false_yes_planted_B_with_A"] = rate([y for _, y in planted])
    out["false_yes_B_without_A"] = rate([y for _, y in b_alone])
    out["false_yes_other_absent"] = rate([y for _, y in other])
    out["_planted_keys"] = [k for k, _ in planted]
    return out


def _fmt(entry: dict[str, Any]) -> str:
    return f"{entry['rate']:.3f} [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}] ({entry['k']}/{entry['n']})"


def report(results: dict[str, dict[str, Any]], answers: dict[str, dict], n_scenes: int, first_seed: int) -> str:
    """Markdown tables of the results."""
    from grains.stats import mcnemar_exact
    from grains.vlm.toy.probes import ABSENT_SETTINGS

    names = list(results)
    lines = [f"Held-out scenes: {n_scenes} (seeds {first_seed} .. {first_seed + n_scenes - 1}, unbiased distribution)",
             "", "| model | present: said yes | absent random: said no | absent popular: said no | "
             "absent adversarial: said no |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {_fmt(r['present'])} | " + " | ".join(_fmt(r[f'absent_{s}']) for s in ABSENT_SETTINGS)
                     + " |")
    lines += ["", "| model | POPE setting | n | accuracy | precision | recall | F1 | yes-ratio |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        for s in ABSENT_SETTINGS:
            m = results[name][f"pope_{s}"]
            lines.append(f"| {name} | {s} | {m['n']} | {m['accuracy']:.3f} | {m['precision']:.3f} | "
                         f"{m['recall']:.3f} | {m['f1']:.3f} | {m['yes_ratio']:.3f} |")
    lines += ["", "False 'yes' (absent objects; each distinct question once):", "",
              "| model | planted B, its A present | B, its A absent | other absent objects |",
              "| --- | --- | --- | --- |"]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {_fmt(r['false_yes_planted_B_with_A'])} | {_fmt(r['false_yes_B_without_A'])} | "
                     f"{_fmt(r['false_yes_other_absent'])} |")
    if len(names) == 2:
        keys = results[names[0]]["_planted_keys"]
        correct = [[answers[n][k] == "no" for k in keys] for n in names]
        p = mcnemar_exact(correct[1], correct[0])
        lines += ["", f"Planted B with A present, same {len(keys)} questions: {names[0]} says yes to "
                  f"{sum(not c for c in correct[0])}, {names[1]} to {sum(not c for c in correct[1])} "
                  f"(exact McNemar p = {p:.2g})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-scenes", type=int, default=300)
    parser.add_argument("--first-seed", type=int, default=HELDOUT_START)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated presets or checkpoint folders")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows, questions = probe_set(args.n_scenes, args.first_seed)
    results, answers, seconds = {}, {}, {}
    for model in args.models.split(","):
        answers[model], seconds[model] = answer_all(model, questions)
        results[model] = tables(rows, answers[model])
    print(report(results, answers, args.n_scenes, args.first_seed))
    print(f"\n{len(questions)} distinct questions per model; seconds: "
          + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    if args.json:
        data = {"n_scenes": args.n_scenes, "first_seed": args.first_seed, "seconds": seconds,
                "results": {m: {k: v for k, v in r.items() if not k.startswith("_")} for m, r in results.items()}}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
