"""How often `grains.crossval.cross_validate` claims a win that is not there, and how often it finds one that is.

Two designs, both driven through `cross_validate` with build/score callbacks only (as `build_vector` drives it):

- independent: steered margins are the unsteered ones plus fresh noise that has nothing to do with the vector
  (what tests/unit/test_crossval.py always simulated);
- coupled: a CAA-like vector, per layer the mean of label x feature over the items it is built from, and each
  item's gain is strength x label x (feature . vector). With labels drawn independently of the features (label-
  shuffled items) every vector's expected gain on a new item is exactly 0, yet each item's label helps build the
  vector that scores the items of the other folds, so out-of-fold gains are coupled through the vector.

A planted effect adds `effect` x label along one direction of the features at layer 5 (half of it at layers 4
and 6), so the CAA vector finds a real direction there.

    python -m benchmarks.crossval_null --trials 1000            # both designs, n = 24 and 60, fixed cell and coarse
    python -m benchmarks.crossval_null --trials 1000 --before GIT_REV   # also the cross_validate of that revision

A false claim is "beats_unsteered" (mean > 0 and two-sided p < 0.05), nominal rate 2.5%.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = list(range(8))
STRENGTHS = [0.25, 0.5, 1.0, 2.0]
EFFECT_LAYER = 5
SETTINGS = {"fixed": ([EFFECT_LAYER], [1.0], "grid"), "coarse": (LAYERS, STRENGTHS, "coarse")}


def coupled_design(n_items: int, rng: np.random.Generator, effect: float = 0.0, dims: int = 8
                   ) -> tuple[Callable, Callable]:
    """(build, score) for the vector-coupled design; `effect` 0 is the null (labels independent of features)."""
    labels = rng.choice([-1.0, 1.0], size=n_items)
    features = rng.normal(size=(len(LAYERS), n_items, dims))
    for layer, share in ((EFFECT_LAYER, 1.0), (EFFECT_LAYER - 1, 0.5), (EFFECT_LAYER + 1, 0.5)):
        features[layer, :, 0] += share * effect * labels
    base = rng.normal(size=n_items)

    def build(train: list[int]) -> np.ndarray:
        return np.einsum("i,lid->ld", labels[train], features[:, train, :]) / len(train)

    def score(vector: np.ndarray | None, layer: int | None, strength: float, idx: list[int]) -> list[float]:
        if vector is None or not strength:
            return base[idx].tolist()
        return (base[idx] + strength * labels[idx] * (features[layer, idx, :] @ vector[layer])).tolist()

    return build, score


def independent_design(n_items: int, rng: np.random.Generator, effect: float = 0.0, spread: float = 0.5
                       ) -> tuple[Callable, Callable]:
    """(build, score) where steering adds fresh noise unrelated to any vector, plus `effect` x min(strength, 1) at
    layer 5 (half of it at layers 4 and 6)."""
    base = rng.normal(size=n_items)

    def score(vector: Any, layer: int | None, strength: float, idx: list[int]) -> list[float]:
        if vector is None or not strength:
            return base[idx].tolist()
        share = {EFFECT_LAYER: 1.0, EFFECT_LAYER - 1: 0.5, EFFECT_LAYER + 1: 0.5}.get(layer, 0.0)
        lift = effect * share * min(strength, 1.0)
        return (base[idx] + lift + rng.normal(0.0, spread, len(idx))).tolist()

    return (lambda train: object()), score


DESIGNS = {"coupled": coupled_design, "independent": independent_design}


def claim_rates(cross_validate: Callable, design: str, n_items: int, setting: str, trials: int, effect: float = 0.0,
                seed: int = 0) -> dict[str, float]:
    """Share of trials that claim a win, and the mean of the reported estimate, for one design and setting."""
    layers, strengths, search = SETTINGS[setting]
    wins, estimates = 0, []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial, n_items])
        build, score = DESIGNS[design](n_items, rng, effect)
        result = cross_validate(n_items, layers, strengths, build, score, folds=3, seed=trial, search=search)
        wins += bool(result.beats_unsteered)
        estimates.append(result.margin_gain)
    return {"claims": wins / trials, "mean_estimate": float(np.mean(estimates))}


def load_cross_validate(revision: str | None) -> Callable:
    """`cross_validate` of the working tree, or of `revision` (its grains/crossval.py, with today's grains.stats)."""
    if revision is None:
        from grains.crossval import cross_validate
        return cross_validate
    source = subprocess.run(["git", "show", f"{revision}:grains/crossval.py"], capture_output=True, text=True,
                            check=True).stdout
    path = Path(tempfile.mkdtemp()) / "crossval_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("crossval_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.cross_validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--before", default=None, help="git revision whose cross_validate is the 'before'")
    parser.add_argument("--effects", default="0.6,1.0", help="planted effects for the power rows")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    versions = {"after": load_cross_validate(None)}
    if args.before:
        versions = {"before": load_cross_validate(args.before), **versions}
    rows = []
    effects = [0.0] + [float(e) for e in args.effects.split(",") if e]
    for effect in effects:
        for design in DESIGNS:
            for n_items in (24, 60):
                for setting in SETTINGS:
                    row = {"effect": effect, "design": design, "n": n_items, "setting": setting}
                    for name, cross_validate in versions.items():
                        start = time.perf_counter()
                        rates = claim_rates(cross_validate, design, n_items, setting, args.trials, effect)
                        row[name] = rates["claims"]
                        row[f"{name}_mean_estimate"] = rates["mean_estimate"]
                        row[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    se = (0.025 * 0.975 / args.trials) ** 0.5
    print(f"win claims in {args.trials} trials per row (nominal 2.5% under the null, simulation SE {se:.1%})")
    print("effect | design      |  n | setting | " + " | ".join(f"{v:>6}" for v in versions))
    for row in rows:
        print(f"{row['effect']:6.2f} | {row['design']:<11} | {row['n']:>2} | {row['setting']:<7} | "
              + " | ".join(f"{row[v]:6.1%}" for v in versions))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
