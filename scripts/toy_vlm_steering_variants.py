"""Two more ways to steer the toy VLM against its planted hallucination, measured on validation scenes.

`scripts/build_toy_vlm_vector.py` found that no layer x strength of the GrAInS or CAA vector, added at every position,
turns the planted "yes" into "no" before it has cost most of the recall. This script tries the two variants left:

1. **where it is added**: the shipped GrAInS direction added only at the image-token positions, only at the text
   positions, or only at the last position (where the answer is read), per layer and strength;
2. **a planted-specific direction**: f_AB = mean hidden state at the last position for "Is there a B?" with A present
   and B absent, minus the same for B asked with neither A nor B present (BUILD scenes, seeds 1,100,000,000 on), so
   that subtracting it removes what A adds to a question about B; subtracted at the last position or at every text
   position, with strength in units of the mean hidden-state norm there;
3. **directional ablation of f_AB** (not an addition): h <- h - alpha (h . u) u with u the unit f_AB, so each state
   loses its own component along u (alpha 1 removes it, 2 reflects it), a state-dependent change rather than one
   shift for every probe; at the last position, every text position or every position.

Each cell counts "yes" answers (P(yes) > P(no) at the answer) on VALIDATION scenes (seeds 1,200,000,000 on: neither
build nor test) for planted probes (should be no), present objects (should be yes) and random absent objects (should
be no). It chooses nothing and touches no test scene.

    OMP_NUM_THREADS=1 python scripts/toy_vlm_steering_variants.py --scenes 150 \\
        --out benchmarks/results/toy_vlm_steering_variants.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_toy_vlm_vector import BUILD_SEED, VALIDATION_SEED, planted, scene_set, unique_rows  # noqa: E402

from grains.models import load_model  # noqa: E402
from grains.scoring import resolve_image  # noqa: E402
from grains.steering import steer_hidden  # noqa: E402
from grains.vectors import load_vector  # noqa: E402
from grains.vlm.toy.scenes import PLANTED_PAIRS  # noqa: E402

STRENGTHS = (0.1, 0.25, 0.5, 1.0, 2.0)
KINDS = ("planted", "present", "random")


class Probes:
    """Encoded validation probes and their yes/no margins under a position-restricted addition at one layer."""

    def __init__(self, lm: Any, probes: list[tuple[str, Any]]):
        self.lm = lm
        tok = lm.tokenizer
        self.yes = tok.encode("Yes", add_special_tokens=False)[0]
        self.no = tok.encode("No", add_special_tokens=False)[0]
        self.items = []
        for kind, p in probes:
            enc = lm.encode_prompt(p.question, image=resolve_image(p.image))
            ids = torch.tensor([enc.ids])
            extras = lm.adapter.expand_extras(enc.extras, 1)
            with torch.no_grad():
                embeds = lm.adapter.embed_ids(ids, extras)
            self.items.append((kind, ids, extras, embeds, torch.tensor(enc.image_mask)))

    def run(self, ids: Any, extras: Any, embeds: Any, hooks: list) -> Any:
        handles = [self.lm.adapter.layers[la].register_forward_hook(h) for la, h in hooks]
        try:
            with torch.no_grad():
                return self.lm.adapter.forward_embeds(embeds, attention_mask=torch.ones_like(ids), extras=extras,
                                                      input_ids=ids, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()

    def yes_counts(self, layer: int | None = None, add: Any = None, where: str = "all",
                   project: float | None = None) -> dict[str, int]:
        """"Yes" answers per kind with `add` added (or, with `project`, h - project * (h . add) add for a unit
        `add`) at `layer`, at the positions `where` names."""
        counts = dict.fromkeys(KINDS, 0)
        for kind, ids, extras, embeds, image_mask in self.items:
            hooks = []
            if add is not None:
                last = torch.arange(len(image_mask)) == len(image_mask) - 1
                pos = {"all": torch.ones_like(image_mask), "image": image_mask, "text": ~image_mask,
                       "last": last}[where].view(1, -1, 1)

                def hook(module: Any, args: Any, out: Any, pos: Any = pos) -> Any:
                    h = out[0] if isinstance(out, tuple) else out
                    if project is None:
                        changed = steer_hidden(h, add)
                    else:
                        changed = h - project * (h @ add).unsqueeze(-1) * add
                    steered = torch.where(pos, changed, h)
                    return (steered, *out[1:]) if isinstance(out, tuple) else steered

                hooks.append((layer, hook))
            lp = torch.log_softmax(self.run(ids, extras, embeds, hooks).logits[0, -1].float(), -1)
            counts[kind] += int(lp[self.yes] > lp[self.no])
        return counts

    def last_states(self) -> dict[int, list[Any]]:
        """Every layer's hidden state at the last position, per probe."""
        out: dict[int, list[Any]] = {la: [] for la in range(self.lm.num_layers)}
        for _, ids, extras, embeds, _ in self.items:
            rec: dict[int, Any] = {}

            def keep(module: Any, args: Any, out: Any, layer: int, rec: dict = rec) -> None:
                rec[layer] = (out[0] if isinstance(out, tuple) else out)[0, -1]

            hooks = [(la, lambda m, a, o, la=la, keep=keep: keep(m, a, o, la)) for la in range(self.lm.num_layers)]
            self.run(ids, extras, embeds, hooks)
            for la in out:
                out[la].append(rec[la])
        return out


def validation_probes(n: int) -> list[tuple[str, Any]]:
    raw, probes = scene_set(Path(tempfile.mkdtemp()), VALIDATION_SEED, n)
    out = []
    for setting in ("present", "random", "adversarial"):
        for r, p in zip(*unique_rows(raw, probes, setting)):
            if setting == "adversarial" and planted(r):
                out.append(("planted", p))
            elif setting != "adversarial":
                out.append((setting, p))
    return out


def planted_direction(lm: Any, n: int) -> tuple[dict[int, tuple[Any, float]], dict[str, int]]:
    """Per layer (unit f_AB, mean hidden norm of the planted group) from BUILD scenes, and the group sizes."""
    raw, probes = scene_set(Path(tempfile.mkdtemp()), BUILD_SEED, n)
    partner = {b: a for a, b in PLANTED_PAIRS}
    groups: dict[str, list] = {"planted": [], "neither": []}
    seen: set = set()
    for r, p in zip(raw, probes):
        key = (r["scene_seed"], r["object"])
        if key in seen or r["answer"] != "no" or r["object"] not in partner:
            continue
        seen.add(key)
        present = {b["kind"] for b in r["boxes"]}
        groups["planted" if partner[r["object"]] in present else "neither"].append(("x", p))
    states = {k: Probes(lm, v).last_states() for k, v in groups.items()}
    out = {}
    for la in range(lm.num_layers):
        a, b = torch.stack(states["planted"][la]), torch.stack(states["neither"][la])
        d = a.mean(0) - b.mean(0)
        out[la] = (d / d.norm(), float(a.norm(dim=-1).mean()))
    return out, {k: len(v) for k, v in groups.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-vlm-shapes")
    ap.add_argument("--vector", default=str(ROOT / "assets" / "toy_vlm_vector.safetensors"))
    ap.add_argument("--scenes", type=int, default=150, help="validation scenes")
    ap.add_argument("--build-scenes", type=int, default=200, help="build scenes for f_AB")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_vlm_steering_variants.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    lm = load_model(args.model)
    vector = load_vector(args.vector)
    val = Probes(lm, validation_probes(args.scenes))
    result: dict[str, Any] = {"model": args.model, "validation_scenes": args.scenes,
                              "validation_seeds_from": VALIDATION_SEED,
                              "probes": {k: sum(1 for i in val.items if i[0] == k) for k in KINDS},
                              "unsteered": val.yes_counts(), "positions": [], "planted_direction": []}
    print("unsteered", result["unsteered"], flush=True)
    for where in ("image", "text", "last"):
        for layer in range(lm.num_layers):
            for s in STRENGTHS:
                cell = {"where": where, "layer": layer, "strength": s,
                        "yes": val.yes_counts(layer, vector.scaled(layer, s), where)}
                result["positions"].append(cell)
                print(cell, flush=True)
    directions, sizes = planted_direction(lm, args.build_scenes)
    result["planted_direction_build"] = {"scenes": args.build_scenes, "seeds_from": BUILD_SEED, "groups": sizes}
    for layer, (unit, norm) in directions.items():
        for where in ("last", "text"):
            for s in STRENGTHS[:4]:
                cell = {"where": where, "layer": layer, "strength": s,
                        "yes": val.yes_counts(layer, -s * norm * unit, where)}
                result["planted_direction"].append(cell)
                print(cell, flush=True)
    result["directional_ablation"] = []
    for layer, (unit, _) in directions.items():
        for where in ("last", "text", "all"):
            for alpha in (0.5, 1.0, 2.0):
                cell = {"where": where, "layer": layer, "alpha": alpha,
                        "yes": val.yes_counts(layer, unit, where, project=alpha)}
                result["directional_ablation"].append(cell)
                print(cell, flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
