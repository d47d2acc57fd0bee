"""POPE-style yes/no probe rows about generated scenes, and the folder `python -m grains scenes` writes.

Every object in a scene gets a "present" probe (answer yes). Absent objects, as many as are present, are picked three
ways, as POPE does: "random" (uniformly), "popular" (the kinds most frequent in the biased training distribution) and
"adversarial" (the kinds that co-occur most with the ones present in that distribution: the planted partner B of a
present A comes first). Rows are in the format `grains.load_probes` reads (image path relative to the JSONL,
question, answer, object) plus the setting, the scene seed and the boxes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from grains.errors import InputError
from grains.vlm.toy.scenes import BIASED, MAX_SCENE_SEED, UNBIASED, Scene, SceneDistribution, make_scene, scene_kinds
from grains.vlm.toy.shapes import KINDS

QUESTION = "Is there a {object} in the image?"
SETTINGS: tuple[str, ...] = ("present", "random", "popular", "adversarial")
ABSENT_SETTINGS: tuple[str, ...] = SETTINGS[1:]
STATS_SEEDS = range(900_000_000, 900_020_000)  # scenes whose kinds give the training distribution's statistics
MAX_SCENES = 100_000


@lru_cache(maxsize=4)
def kind_statistics(distribution: SceneDistribution = BIASED) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """How often each kind appears, and each pair appears together, in 20,000 scenes of `distribution`.

    Args:
        distribution: the scene distribution (the biased training one by default).

    Returns:
        (counts[kind], together[kind][other]).
    """
    counts: Counter[str] = Counter()
    together: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for seed in STATS_SEEDS:
        kinds = scene_kinds(seed, distribution)
        counts.update(kinds)
        for k in kinds:
            together[k].update(o for o in kinds if o != k)
    return dict(counts), {k: dict(v) for k, v in together.items()}


def popular_order(distribution: SceneDistribution = BIASED) -> list[str]:
    """Kinds from the most to the least frequent in `distribution` (ties in the order of KINDS)."""
    counts, _ = kind_statistics(distribution)
    return sorted(KINDS, key=lambda k: (-counts.get(k, 0), KINDS.index(k)))


def adversarial_order(present: Iterable[str], distribution: SceneDistribution = BIASED) -> list[str]:
    """Absent kinds ranked by sum over the present kinds p of P(kind | p) in `distribution` (ties: KINDS order)."""
    counts, together = kind_statistics(distribution)
    present = list(present)
    score = {k: sum(together[p].get(k, 0) / max(1, counts.get(p, 0)) for p in present) for k in KINDS}
    return sorted((k for k in KINDS if k not in present), key=lambda k: (-score[k], KINDS.index(k)))


def absent_objects(scene: Scene, setting: str, count: int, statistics: SceneDistribution = BIASED) -> list[str]:
    """`count` absent kinds for one POPE setting ("random", "popular" or "adversarial").

    Args:
        scene: the scene.
        setting: how to pick them.
        count: how many (fewer when fewer kinds are absent).
        statistics: the distribution whose frequencies define "popular" and "adversarial".

    Returns:
        Kinds not in the scene.
    """
    present = scene.kinds
    absent = [k for k in KINDS if k not in present]
    if setting == "random":
        return random.Random(f"probe-random-{scene.seed}").sample(absent, min(count, len(absent)))
    if setting == "popular":
        return [k for k in popular_order(statistics) if k not in present][:count]
    if setting == "adversarial":
        return adversarial_order(present, statistics)[:count]
    raise InputError(f"Unknown setting {setting!r}: use one of {', '.join(ABSENT_SETTINGS)}.")


def scene_probes(scene: Scene, image: str, settings: Sequence[str] = SETTINGS,
                 statistics: SceneDistribution = BIASED) -> list[dict[str, Any]]:
    """Probe rows about one scene: a present row per object, then per absent setting as many absent rows.

    Args:
        scene: the scene.
        image: the image path written in each row (relative to the JSONL).
        settings: which settings to write.
        statistics: the distribution whose frequencies define "popular" and "adversarial".

    Returns:
        Rows with image, question, answer, object, setting, scene_seed, box (the object's, None when absent) and
        boxes (every object of the scene: kind and box).
    """
    boxes = [{"kind": o.kind, "box": list(o.box)} for o in scene.objects]
    def row(kind: str, setting: str) -> dict[str, Any]:
        box = next((list(o.box) for o in scene.objects if o.kind == kind), None)
        return {"image": image, "question": QUESTION.format(object=kind), "answer": "yes" if box else "no",
                "object": kind, "setting": setting, "scene_seed": scene.seed, "box": box, "boxes": boxes}
    rows = [row(k, "present") for k in scene.kinds] if "present" in settings else []
    for setting in ABSENT_SETTINGS:
        if setting in settings:
            rows += [row(k, setting) for k in absent_objects(scene, setting, len(scene.objects), statistics)]
    return rows


def setting_rows(rows: Sequence[dict[str, Any]], setting: str) -> list[dict[str, Any]]:
    """POPE's split for one setting: the present rows and that setting's absent rows.

    Args:
        rows: probe rows (dicts with a "setting").
        setting: "random", "popular" or "adversarial".

    Returns:
        The rows of the split, in file order.
    """
    if setting not in ABSENT_SETTINGS:
        raise InputError(f"Unknown setting {setting!r}: use one of {', '.join(ABSENT_SETTINGS)}.")
    return [r for r in rows if r.get("setting") in ("present", setting)]


def write_scene_set(out_dir: str | Path, seed: int, n: int, distribution: str = "unbiased") -> dict[str, Any]:
    """Draw scenes `seed` .. `seed + n - 1` and write images/, masks/ (label maps), scenes.jsonl and probes.jsonl.

    Args:
        out_dir: the folder (created; existing files of the same names are overwritten).
        seed: the first scene seed.
        n: how many scenes (at most 100,000).
        distribution: "unbiased" (held-out scenes: kinds drawn independently) or "biased" (the training rule).

    Returns:
        A summary: the folder, the files, how many scenes and probes, and probes per setting.

    Example:
        >>> write_scene_set("/tmp/scenes", seed=1_000_000_000, n=20)["probes"]
    """
    if distribution not in ("unbiased", "biased"):
        raise InputError("The distribution must be 'unbiased' or 'biased'.")
    if not 1 <= n <= MAX_SCENES:
        raise InputError(f"The number of scenes must lie between 1 and {MAX_SCENES:,}.")
    if seed < 0 or seed + n > MAX_SCENE_SEED:
        raise InputError(f"Scene seeds must lie between 0 and {MAX_SCENE_SEED - 1}.")
    root = Path(out_dir)
    try:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the folder {root}: {exc.strerror or exc}.") from exc
    dist = BIASED if distribution == "biased" else UNBIASED
    rows: list[dict[str, Any]] = []
    with open(root / "scenes.jsonl", "w", encoding="utf-8") as scenes_file:
        for scene_seed in range(seed, seed + n):
            scene = make_scene(scene_seed, dist)
            name = f"scene_{scene_seed}.png"
            scene.image.save(root / "images" / name)
            Image.fromarray(scene.label_map(), "L").save(root / "masks" / name)
            info = scene.to_dict() | {"image": f"images/{name}", "mask": f"masks/{name}"}
            scenes_file.write(json.dumps(info) + "\n")
            rows += scene_probes(scene, f"images/{name}")
    with open(root / "probes.jsonl", "w", encoding="utf-8") as probes_file:
        probes_file.writelines(json.dumps(r) + "\n" for r in rows)
    per_setting = Counter(r["setting"] for r in rows)
    return {"out": str(root), "probes_file": str(root / "probes.jsonl"), "scenes_file": str(root / "scenes.jsonl"),
            "scenes": n, "probes": len(rows), "per_setting": {s: per_setting.get(s, 0) for s in SETTINGS},
            "distribution": distribution, "seeds": [seed, seed + n - 1]}
