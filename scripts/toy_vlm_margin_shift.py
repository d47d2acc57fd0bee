"""The best any yes/no-bias vector could do: the toy VLM's answer margins on validation scenes, and what a plain shift
of every margin toward "No" does to the planted hallucination, to recall and to random absent objects.

A steering vector that acts like one shift of log P(Yes) - log P(No) for every probe turns a planted "yes" into "no"
only after the true "yes" answers with smaller margins have flipped. So the margins of the planted false "yes"
against the margins of true "yes" answers decide whether such a vector can cut the hallucination while keeping recall
(docs/toy_vlm.md). Validation scenes only (seeds 1,200,000,000 on); it chooses nothing.

    OMP_NUM_THREADS=1 python scripts/toy_vlm_margin_shift.py --models toy-vlm-shapes /tmp/toy/toy-vlm-shapes \\
        --out benchmarks/results/toy_vlm_margin_shift.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from toy_vlm_steering_variants import KINDS, Probes, validation_probes  # noqa: E402

from grains.models import load_model  # noqa: E402

SHIFTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def margins(lm: Any, probes: Probes) -> dict[str, list[float]]:
    """log P(Yes) - log P(No) at the answer start, per probe kind."""
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    for kind, ids, extras, embeds, _ in probes.items:
        lp = torch.log_softmax(probes.run(ids, extras, embeds, []).logits[0, -1].float(), -1)
        out[kind].append(float(lp[probes.yes] - lp[probes.no]))
    return out


def summary(values: dict[str, list[float]]) -> dict[str, Any]:
    """Per kind the quartiles (and of the "yes" answers alone), and the yes counts after each shift."""
    def quartiles(v: list[float]) -> list[float] | None:
        return [round(q, 2) for q in statistics.quantiles(v, n=4)] if len(v) >= 2 else None

    return {"n": {k: len(v) for k, v in values.items()},
            "quartiles": {k: quartiles(v) for k, v in values.items()},
            "quartiles_of_yes": {k: quartiles([m for m in v if m > 0]) for k, v in values.items()},
            "yes_after_shift": [{"shift": s, **{k: sum(m > s for m in v) for k, v in values.items()}}
                                for s in SHIFTS]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["toy-vlm-shapes"], help="presets or model folders")
    parser.add_argument("--scenes", type=int, default=150, help="validation scenes")
    parser.add_argument("--out", default=None, help="JSON file for the margins and the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    probes_of_scenes = validation_probes(args.scenes)
    results = {}
    for name in args.models:
        lm = load_model(name)
        training = Path(getattr(lm.model.config, "_name_or_path", "") or name) / "training.json"
        values = margins(lm, Probes(lm, probes_of_scenes))
        results[name] = {**summary(values), "margins": values}
        if training.exists():
            results[name]["recipe"] = json.loads(training.read_text())["recipe"]
        print(f"{name}: " + json.dumps(results[name]["yes_after_shift"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"validation_scenes": args.scenes, "models": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
