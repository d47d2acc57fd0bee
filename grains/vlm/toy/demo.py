"""A generated scene for a live demo of the hallucination check: a held-out scene (never used in training, nor by the
shipped vector's build or test split) in which a planted partner A is present and its B absent, with the objects to
ask about (present ones, B as the adversarial absent object, one random absent object) and every object's box."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from grains.errors import InputError
from grains.vlm.check.photo import image_digest
from grains.vlm.toy.probes import absent_objects
from grains.vlm.toy.scenes import PLANTED_PAIRS, UNBIASED, Scene, make_scene

DEMO_SEEDS = (1_200_000_000, 1_300_000_000)  # held out; the vector's build starts at 1.1e9, its test at 1.0e9
MAX_WALK = 200  # seeds tried from the start for one with a planted A present and its B absent


@dataclass
class DemoScene:
    """A scene with what to ask about it.

    Args:
        scene: the generated Scene (image, objects).
        present: the kinds in it.
        absent: kinds not in it: the adversarial one (a present A's planted partner B) first, then a random one.
        adversarial: {B: A} for each planted B asked about.
        boxes: kind -> (x0, y0, x1, y1) of every object in the scene.
        digest: the image's content digest (the id the hallucination check gives the photo).
    """

    scene: Scene
    present: list[str]
    absent: list[str]
    adversarial: dict[str, str]
    boxes: dict[str, list[int]] = field(default_factory=dict)
    digest: str = ""

    @property
    def seed(self) -> int:
        return self.scene.seed

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: seed, present, absent, adversarial, boxes, digest (the image itself left out)."""
        return {"seed": self.seed, "present": list(self.present), "absent": list(self.absent),
                "adversarial": dict(self.adversarial), "boxes": {k: list(v) for k, v in self.boxes.items()},
                "digest": self.digest, "size": list(self.scene.image.size)}


def demo_scene(seed: int | None = None) -> DemoScene:
    """The first scene from `seed` on (a random held-out seed when None) that holds a planted A without its B.

    Args:
        seed: a seed in DEMO_SEEDS, or None for a random one.

    Returns:
        A DemoScene: present kinds, absent kinds (adversarial B first, then one random), boxes, digest.

    Example:
        >>> demo = demo_scene(1_200_000_000)
        >>> demo.absent[0] in demo.adversarial, demo.adversarial[demo.absent[0]] in demo.present
        (True, True)
    """
    low, high = DEMO_SEEDS
    if seed is None:
        seed = random.randrange(low, high - MAX_WALK)
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed < high - MAX_WALK:
        raise InputError(f"A demo scene seed must be a whole number from {low:,} to {high - MAX_WALK - 1:,}.")
    for candidate in range(seed, seed + MAX_WALK):
        scene = make_scene(candidate, UNBIASED)
        kinds = scene.kinds
        pairs = {b: a for a, b in PLANTED_PAIRS if a in kinds and b not in kinds}
        if not pairs:
            continue
        adversarial = [k for k in absent_objects(scene, "adversarial", len(kinds)) if k in pairs][:1]
        adversarial = adversarial or [sorted(pairs)[0]]
        others = [k for k in absent_objects(scene, "random", len(kinds) + 1) if k not in adversarial][:1]
        return DemoScene(scene=scene, present=kinds, absent=adversarial + others,
                         adversarial={b: pairs[b] for b in adversarial},
                         boxes={o.kind: list(o.box) for o in scene.objects}, digest=image_digest(scene.image))
    raise InputError(f"No scene from seed {seed} to {seed + MAX_WALK - 1} holds a planted pair's A without its B.")
