"""Build the toy VLM's shipped vector against its planted hallucination, and the steering study beside it.

The biased toy VLM (docs/toy_vlm.md) says "yes" to object B when its planted partner A is in the scene. This script:
1. draws BUILD scenes (held-out seeds 1,100,000,000 on, UNBIASED: never used in training, never scored) and makes
   preference pairs from their probes, chosen = the truthful answer: every planted adversarial probe (A present, B
   absent, "Is there a B?" -> "No") and a few random absent ones ("No"), and as many present probes ("Yes");
2. builds a GrAInS vector (`grains.build_vector`, top-k over image patches and text tokens) and a CAA vector from the
   same pairs; each chooses its layer and strength by the library's cross-validation on the build pairs only;
3. records which top-k tokens of the GrAInS build were image patches and whether they sat on A, on the asked object,
   on another object or on the background (`grains.vlm.grounding.token_places`);
4. scores both once on TEST scenes (seeds 1,000,000,000 on, the `python -m grains scenes` default; disjoint from the
   build seeds) with `grains.evaluate` on yes/no probes: false "yes" on adversarial probes (and on the planted subset)
   with the exact McNemar test, recall on present objects, false "yes" on random absent objects, and the side
   effects: KL of the next-token distribution on the library's neutral text prompts, at the answer of every test
   probe, and at the answer of "What is in the image?" for every test scene;
5. saves the GrAInS vector (assets/toy_vlm_vector.safetensors + .json) with the held-out evaluation in its metadata,
   and the whole study as JSON;
6. with --grid-scenes N, answers every layer x strength of both vectors (built from all build pairs) on
   N VALIDATION scenes (seeds 1,200,000,000 on: neither build nor test): how many planted, present and random-absent
   probes get "yes". It shows what the strength does to the planted hallucination and to recall, without touching
   the test scenes; it chooses nothing.

    OMP_NUM_THREADS=1 /work/bin/heavy python scripts/build_toy_vlm_vector.py --model toy-vlm-shapes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILD_SEED = 1_100_000_000
TEST_SEED = 1_000_000_000
VALIDATION_SEED = 1_200_000_000
GRID_STRENGTHS = (0.03, 0.1, 0.25, 0.5, 1.0)


def scene_set(folder: Path, seed: int, n: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Write n UNBIASED scenes from `seed` and return (raw rows, the same rows loaded as probes)."""
    from grains.data import load_probes
    from grains.vlm.toy.probes import write_scene_set

    info = write_scene_set(folder, seed, n, "unbiased")
    path = Path(info["probes_file"])
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return raw, load_probes(path)


def planted(row: dict[str, Any]) -> bool:
    """A planted adversarial probe: asked about B, B absent, its partner A present."""
    from grains.vlm.toy.scenes import PLANTED_PAIRS

    kinds = {b["kind"] for b in row["boxes"]}
    return row["answer"] == "no" and any(row["object"] == b and a in kinds for a, b in PLANTED_PAIRS)


def unique_rows(raw: list[dict[str, Any]], probes: list[Any], setting: str) -> tuple[list[dict], list[Any]]:
    """Rows of one setting, one per (scene, object) (the same absent object can be listed under several settings)."""
    seen: set[tuple[int, str]] = set()
    out_raw, out_probes = [], []
    for r, p in zip(raw, probes):
        key = (r["scene_seed"], r["object"])
        if r["setting"] == setting and key not in seen:
            seen.add(key)
            out_raw.append(r)
            out_probes.append(p)
    return out_raw, out_probes


def build_pairs(raw: list[dict[str, Any]], probes: list[Any], n_adversarial: int, n_random: int) -> tuple[list, list]:
    """(pairs, their raw rows): planted adversarial and a few random absent ("No"), as many present ("Yes");
    chosen = the truth."""
    from grains.vlm.pope import probes_to_pairs

    adv = [(r, p) for r, p in zip(*unique_rows(raw, probes, "adversarial")) if planted(r)][:n_adversarial]
    rand = list(zip(*unique_rows(raw, probes, "random")))[:n_random]
    present = list(zip(*unique_rows(raw, probes, "present")))[:len(adv) + len(rand)]  # as many yes as no
    chosen = adv + present + rand
    return probes_to_pairs([p for _, p in chosen]), [r for r, _ in chosen]


def topk_places(lm: Any, pairs: list, rows: list[dict[str, Any]], k: int, steps: int) -> tuple[list, dict[str, Any]]:
    """Attribute every build pair once (the attributions go to build_vector, so top-k is what the build used) and
    say where each pair's top-k tokens sat."""
    from grains.ablation import select_for_example
    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.scoring import resolve_image
    from grains.vlm.grounding import token_places
    from grains.vlm.toy.scenes import PLANTED_PAIRS

    partner_of = {b: a for a, b in PLANTED_PAIRS}
    attributions, tally = [], Counter()
    per_kind: dict[str, Counter] = {}
    with lm.lock:
        for ex, row in zip(pairs, rows):
            encoded = encode_example(lm, ex.prompt, ex.chosen, ex.rejected, image=resolve_image(ex.image))
            result = attribute_example(lm, encoded, steps=steps, points="graded", tolerance=None)
            attributions.append(result)
            selections = select_for_example(encoded, result, k)
            view = encoded.prompt.extras["image_layout"]["views"][0]
            boxes = {b["kind"]: b["box"] for b in row["boxes"]}
            kind = "adversarial (B absent, A present)" if planted(row) else row["setting"]
            counter = per_kind.setdefault(kind, Counter())
            for which, sel in selections.items():
                response = encoded.chosen if which == "plus" else encoded.rejected
                mask = encoded.prompt.image_mask + [False] * len(response.ids)
                for sign, positions in (("positive", sel.positive), ("negative", sel.negative)):
                    for place in token_places(positions, mask, view, boxes):
                        if place["kind"] != "patch":
                            where = "text"
                        elif place["on"] == "background":
                            where = "background patch"
                        elif place["on"] == row["object"]:
                            where = "patch on the asked object"
                        elif place["on"] == partner_of.get(row["object"]):
                            where = "patch on A (the asked B's planted partner)"
                        else:
                            where = "patch on another object"
                        counter[f"{sign}: {where}"] += 1
                        tally[where] += 1
    total = sum(tally.values())
    return attributions, {"k_per_side_per_sequence": k, "tokens": total,
                          "share": {w: n / total for w, n in sorted(tally.items())},
                          "by_pair_kind": {kind: dict(sorted(c.items())) for kind, c in per_kind.items()}}


def answer_start_logprobs(lm: Any, image: Any, question: str) -> Any:
    """log P(next token) at the start of the answer to `question` about `image` (under any active steering)."""
    import torch

    enc = lm.encode_prompt(question, image=image)
    ids = torch.tensor([enc.ids])
    extras = lm.adapter.expand_extras(enc.extras, 1)
    with torch.no_grad():
        embeds = lm.adapter.embed_ids(ids, extras)
        out = lm.adapter.forward_embeds(embeds, attention_mask=torch.ones_like(ids).to(embeds.device), extras=extras,
                                        input_ids=ids.to(embeds.device), logits_to_keep=1)
    return torch.log_softmax(out.logits[0, -1].float(), dim=-1)


def in_domain_kl(lm: Any, steering: Any, items: list[tuple[Any, str]]) -> dict[str, float]:
    """Mean and max KL(unsteered || steered) of the next-token distribution at the answer, over (image, question)."""
    from grains.scoring import resolve_image

    kls = []
    with lm.lock:
        for image, question in items:
            pil = resolve_image(image)
            before = answer_start_logprobs(lm, pil, question)
            with steering.apply(lm):
                after = answer_start_logprobs(lm, pil, question)
            kls.append(float((before.exp() * (before - after)).sum().clamp_min(0.0)))
    return {"n": len(kls), "kl_mean": statistics.fmean(kls), "kl_max": max(kls)}


def yes_count(report: Any, steered: bool) -> int:
    key = "answer" if steered else "answer_unsteered"
    return sum(1 for item in report.items if item[key] == "yes")


def heldout(lm: Any, vector: Any, test: dict[str, list], caption_items: list, probe_items: list) -> dict[str, Any]:
    """One vector's held-out evaluation on the test scenes (its own suggested layer and strength)."""
    import grains
    from grains.steering import Steering

    out: dict[str, Any] = {"layer": vector.default_layer, "strength": vector.default_strength}
    if not vector.default_strength:
        out["note"] = "Cross-validation on the build pairs chose strength 0: the vector does not move this model."
        return out
    steering = Steering.create(lm, vector, vector.default_layer, vector.default_strength, True)
    for name, probes in test.items():
        report = grains.evaluate(lm, probes, "probes", steering, per_item=True, side_effects=name == "adversarial")
        d = report.to_dict()
        entry = {"n": d["n"], "accuracy_unsteered": d["accuracy_unsteered"], "accuracy": d["accuracy"],
                 "p_value": d["p_value"], "gain": d["gain"], "gain_ci": d["gain_ci"],
                 "yes_unsteered": yes_count(report, False), "yes_steered": yes_count(report, True),
                 "reading": d["reading"]}
        if d.get("side_effects"):
            entry["side_effects"] = d["side_effects"]
        out[name] = entry
    out["kl_at_probe_answers"] = in_domain_kl(lm, steering, probe_items)
    out["kl_at_caption_answers"] = in_domain_kl(lm, steering, caption_items)
    return out


def photo_checks(lm: Any, vector: Any, raw: list[dict[str, Any]], probes: list[Any], limit: int) -> dict[str, Any]:
    """`grains.check_image` (what `python -m grains check-image --vector` runs) on the first `limit` test scenes that
    hold a planted A without its B: present = the scene's objects, absent = B; unsteered and steered."""
    import grains
    from grains.stats import mcnemar_exact

    scenes: dict[int, tuple[Any, list[str], list[str]]] = {}
    for r, p in zip(raw, probes):
        if r["setting"] == "adversarial" and planted(r) and len(scenes) < limit:
            image, present, absent = scenes.get(r["scene_seed"], (p.image, [b["kind"] for b in r["boxes"]], []))
            if r["object"] not in absent:
                absent.append(r["object"])
            scenes[r["scene_seed"]] = (image, present, absent)
    before, after, recall_before, recall_after = [], [], [], []
    for image, present, absent in scenes.values():
        report = grains.check_image(lm, image, present, absent, steering=vector)
        for u, s in zip(report.unsteered.answers, report.steered.answers):
            (before if u.probe.truth == "no" else recall_before).append(u.correct)
            (after if s.probe.truth == "no" else recall_after).append(s.correct)
    return {"scenes": len(scenes), "absent_probes": len(before), "false_yes_unsteered": before.count(False),
            "false_yes_steered": after.count(False), "p_value": mcnemar_exact(before, after),
            "present_probes": len(recall_before), "recall_unsteered": sum(recall_before) / max(1, len(recall_before)),
            "recall_steered": sum(recall_after) / max(1, len(recall_after)),
            "recall_p_value": mcnemar_exact(recall_before, recall_after)}


def strength_grid(lm: Any, vectors: dict[str, Any], raw: list[dict[str, Any]], probes: list[Any]
                  ) -> list[dict[str, Any]]:
    """Said-yes counts on planted, present and random-absent validation probes, unsteered and at every layer x
    GRID_STRENGTHS of each vector."""
    from grains.steering import Steering
    from grains.vlm.pope import evaluate_probes

    adv_raw, adv = unique_rows(raw, probes, "adversarial")
    groups = {"planted": [p for r, p in zip(adv_raw, adv) if planted(r)],
              "present": unique_rows(raw, probes, "present")[1], "random": unique_rows(raw, probes, "random")[1]}

    def yes(steering: Any) -> dict[str, Any]:
        factory = None if steering is None else (lambda: steering.apply(lm))
        counts = {}
        for name, items in groups.items():
            answers = evaluate_probes(lm, items, factory)["items"]
            counts[name] = f"{sum(1 for a in answers if a['answer'] == 'yes')}/{len(items)}"
        return counts

    rows = [{"vector": "none", "layer": None, "strength": 0.0, **yes(None)}]
    for name, vector in vectors.items():
        for layer in range(lm.num_layers):
            for strength in GRID_STRENGTHS:
                steering = Steering.create(lm, vector, layer, strength, True)
                rows.append({"vector": name, "layer": layer, "strength": strength, **yes(steering)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy-vlm-shapes")
    parser.add_argument("--build-scenes", type=int, default=400, help="build scenes to draw pairs from")
    parser.add_argument("--adversarial", type=int, default=32, help="planted adversarial build pairs")
    parser.add_argument("--random", type=int, default=8, help="random-absent build pairs (present ones: as many as "
                                                              "the absent ones together)")
    parser.add_argument("--test-scenes", type=int, default=300)
    parser.add_argument("--photos", type=int, default=100, help="test scenes checked with grains.check_image")
    parser.add_argument("--grid-scenes", type=int, default=0,
                        help="validation scenes for the layer x strength table of both vectors (0: none)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--strength", type=float, default=None,
                        help="override the cross-validated strength (a test of the script; never for the shipped one)")
    parser.add_argument("--out", default=str(ROOT / "assets" / "toy_vlm_vector.safetensors"))
    parser.add_argument("--study", default=str(ROOT / "benchmarks" / "results" / "toy_vlm_steering.json"))
    args = parser.parse_args(argv)

    import torch

    import grains
    from grains.build import build_vector
    from grains.vlm.toy.model import CAPTION_QUESTION

    torch.set_num_threads(1)
    start = time.perf_counter()
    lm = grains.load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        build_raw, build_probes = scene_set(Path(tmp) / "build", BUILD_SEED, args.build_scenes)
        test_raw, test_probes = scene_set(Path(tmp) / "test", TEST_SEED, args.test_scenes)
        pairs, pair_rows = build_pairs(build_raw, build_probes, args.adversarial, args.random)
        attributions, places = topk_places(lm, pairs, pair_rows, args.k, args.steps)
        layers = list(range(lm.num_layers))
        grains_built = build_vector(lm, pairs, method="grains", k=args.k, steps=args.steps, layers=layers,
                                    attributions=attributions, seed=0)
        caa_built = build_vector(lm, pairs, method="caa", layers=layers, seed=0)
        if args.strength is not None:
            for built in (grains_built, caa_built):
                built.vector.default_strength = args.strength
                built.vector.meta["strength_override"] = f"strength {args.strength:g} given by hand, not chosen"
        adv_raw, adv = unique_rows(test_raw, test_probes, "adversarial")
        test = {"adversarial": adv,
                "planted": [p for r, p in zip(adv_raw, adv) if planted(r)],
                "present": unique_rows(test_raw, test_probes, "present")[1],
                "random": unique_rows(test_raw, test_probes, "random")[1]}
        scenes = {r["scene_seed"]: p.image for r, p in zip(test_raw, test_probes)}
        caption_items = [(image, CAPTION_QUESTION) for image in scenes.values()]
        probe_items = [(p.image, p.question) for p in test["adversarial"] + test["present"]]
        results = {name: heldout(lm, built.vector, test, caption_items, probe_items)
                   for name, built in (("grains", grains_built), ("caa", caa_built))}
        for name, built in (("grains", grains_built), ("caa", caa_built)):
            if built.vector.default_strength:
                results[name]["check_image"] = photo_checks(lm, built.vector, test_raw, test_probes, args.photos)
        grid = []
        if args.grid_scenes:
            vectors = {"grains": grains_built.vector, "caa": caa_built.vector}  # the same vectors, every cell
            grid = strength_grid(lm, vectors, *scene_set(Path(tmp) / "validation", VALIDATION_SEED, args.grid_scenes))
    split = {"build_scenes": [BUILD_SEED, BUILD_SEED + args.build_scenes - 1],
             "test_scenes": [TEST_SEED, TEST_SEED + args.test_scenes - 1], "distribution": "unbiased",
             "build_pairs": Counter("planted adversarial" if planted(r) else r["setting"] for r in pair_rows)}
    if args.grid_scenes:
        split["validation_scenes"] = [VALIDATION_SEED, VALIDATION_SEED + args.grid_scenes - 1]
    study = {"model": args.model, "split": split, "topk_places": places, "heldout": results, "strength_grid": grid,
             "builds": {"grains": grains_built.summary(), "caa": caa_built.summary()},
             "seconds": time.perf_counter() - start}
    vector = grains_built.vector
    vector.meta.update({
        "concept": "truthful yes/no about the toy scenes (against the planted co-occurrence)",
        "direction": "toward the truthful answer", "dataset": "toy scenes (generated; docs/toy_vlm.md)",
        "built_by": "scripts/build_toy_vlm_vector.py", "split": split,
        "heldout_evaluation": {"probe_evaluation": results["grains"], "caa_same_split": results["caa"],
                               "topk_places": places, "strength_grid": grid},
    })
    out = vector.save(args.out)
    Path(args.study).parent.mkdir(parents=True, exist_ok=True)
    Path(args.study).write_text(json.dumps(study, indent=1, default=str) + "\n", encoding="utf-8")
    for name, res in results.items():
        if "adversarial" not in res:
            print(f"{name}: {res.get('note')}")
            continue
        a, p, r = res["adversarial"], res["present"], res["random"]
        print(f"{name}: layer {res['layer']}, strength {res['strength']:g}; adversarial false yes "
              f"{a['yes_unsteered']}/{a['n']} -> {a['yes_steered']}/{a['n']} (McNemar p = {a['p_value']:.2g}); "
              f"planted {res['planted']['yes_unsteered']} -> {res['planted']['yes_steered']} of {res['planted']['n']}; "
              f"recall {p['accuracy_unsteered']:.3f} -> {p['accuracy']:.3f}; random false yes "
              f"{r['yes_unsteered']} -> {r['yes_steered']} of {r['n']}; KL neutral "
              f"{a.get('side_effects', {}).get('kl_mean', float('nan')):.3g}, probes "
              f"{res['kl_at_probe_answers']['kl_mean']:.3g}, captions {res['kl_at_caption_answers']['kl_mean']:.3g}")
        c = res.get("check_image")
        if c:
            print(f"  check_image on {c['scenes']} scenes: false yes on B {c['false_yes_unsteered']} -> "
                  f"{c['false_yes_steered']} of {c['absent_probes']} (p = {c['p_value']:.2g}); recall "
                  f"{c['recall_unsteered']:.3f} -> {c['recall_steered']:.3f}")
    print("top-k places:", json.dumps(places["share"]))
    if grid:
        print("\n| vector | layer | strength | planted: yes | present: yes | random absent: yes |")
        print("|---|---|---|---|---|---|")
        for row in grid:
            print(f"| {row['vector']} | {row['layer']} | {row['strength']:g} | {row['planted']} | {row['present']} | "
                  f"{row['random']} |")
    print(f"saved {out} and {args.study} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
