"""Generated scenes with known contents: 1-4 coloured shapes of ten kinds on varied backgrounds, each object's box
and visible mask recorded, deterministic by seed, with an optional planted co-occurrence rule (object B appears in a
set share of the scenes that contain object A)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from grains.errors import InputError
from grains.vlm.toy.shapes import KIND_COLOURS, KINDS, Box, shape_mask

IMAGE_SIZE = 64
PLANTED_PAIRS: tuple[tuple[str, str], ...] = (("star", "moon"), ("heart", "ring"))
PLANTED_PROB = 0.9
MAX_SCENE_SEED = 2**40


@dataclass(frozen=True)
class SceneDistribution:
    """Where scenes come from: how many objects, how big, and the planted co-occurrence rule.

    Args:
        pairs: (A, B) kind pairs of the rule.
        pair_prob: P(B in the scene | A in the scene) under the rule; None draws every kind independently of the
            others (no rule).
        min_objects, max_objects: objects per scene.
        min_size, max_size: an object's box side in pixels.
        image_size: the square image's side in pixels.

    Example:
        >>> biased = SceneDistribution(pair_prob=0.9)
        >>> make_scene(3, biased).kinds
    """

    pairs: tuple[tuple[str, str], ...] = PLANTED_PAIRS
    pair_prob: float | None = None
    min_objects: int = 1
    max_objects: int = 4
    min_size: int = 11
    max_size: int = 22
    image_size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        for a, b in self.pairs:
            if a not in KIND_COLOURS or b not in KIND_COLOURS or a == b:
                raise InputError(f"A planted pair must name two different kinds of {', '.join(KINDS)}; got {a}, {b}.")
        if self.pair_prob is not None and not 0.0 <= self.pair_prob <= 1.0:
            raise InputError("pair_prob must lie between 0 and 1.")
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise InputError("A scene holds between 1 and 4 objects.")
        if not 4 <= self.min_size <= self.max_size <= self.image_size // 2:
            raise InputError("Object sizes must lie between 4 pixels and half the image.")


BIASED = SceneDistribution(pair_prob=PLANTED_PROB)
UNBIASED = SceneDistribution(pair_prob=None)
DISTRIBUTIONS = {"biased": BIASED, "unbiased": UNBIASED}


@dataclass
class SceneObject:
    """One drawn object.

    Args:
        kind: its kind (one of grains.vlm.toy.shapes.KINDS).
        box: (x0, y0, x1, y1) of its drawn pixels, x1 and y1 exclusive.
        mask: [H, W] bool, the pixels of this object that are visible (later objects may cover part of it).
        colour: its RGB fill.
    """

    kind: str
    box: Box
    mask: np.ndarray = field(repr=False)
    colour: tuple[int, int, int] = (0, 0, 0)

    @property
    def area(self) -> int:
        """Visible pixels."""
        return int(self.mask.sum())


@dataclass
class Scene:
    """A generated picture and what is in it.

    Args:
        seed: the scene seed it was drawn from.
        image: the RGB picture.
        objects: the objects in drawing order.
        background: how the background was made ("light", "dark", "gradient" or "noise").

    Example:
        >>> scene = make_scene(7)
        >>> scene.kinds, scene.objects[0].box
    """

    seed: int
    image: Image.Image
    objects: list[SceneObject]
    background: str = ""

    @property
    def kinds(self) -> list[str]:
        """The kinds present, in drawing order."""
        return [o.kind for o in self.objects]

    def caption(self) -> str:
        """The answer to "What is in the image?": the kinds in the order of KINDS, e.g. "a circle and a star"."""
        names = [f"a {k}" for k in KINDS if k in self.kinds]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    def label_map(self) -> np.ndarray:
        """[H, W] uint8: 0 for background, i + 1 where object i is visible."""
        out = np.zeros(self.objects[0].mask.shape, dtype=np.uint8) if self.objects else np.zeros((1, 1), np.uint8)
        for i, obj in enumerate(self.objects):
            out[obj.mask] = i + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """Seed, size, background and each object's kind, box and colour (JSON-safe; masks left out)."""
        return {"seed": self.seed, "size": list(self.image.size), "background": self.background,
                "objects": [{"kind": o.kind, "box": list(o.box), "colour": list(o.colour), "area": o.area}
                            for o in self.objects]}


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SCENE_SEED:
        raise InputError(f"A scene seed must be a whole number from 0 to {MAX_SCENE_SEED - 1}.")
    return seed


def scene_kinds(seed: int, distribution: SceneDistribution = UNBIASED) -> list[str]:
    """The kinds a scene holds (drawing order), without drawing it: cheap, for statistics over many scenes.

    Args:
        seed: the scene seed.
        distribution: where scenes come from.

    Returns:
        1-4 distinct kinds. Under a rule, for each pair (A, B) with A present, B is present with probability
        `pair_prob` (added or swapped in, or swapped out for a kind outside every pair).
    """
    rng = random.Random(f"kinds-{_check_seed(seed)}")
    kinds = rng.sample(KINDS, rng.randint(distribution.min_objects, distribution.max_objects))
    if distribution.pair_prob is None:
        return kinds
    rule = random.Random(f"rule-{seed}")
    members = {k for pair in distribution.pairs for k in pair}
    outside = [k for k in KINDS if k not in members]
    for a, b in distribution.pairs:
        if a not in kinds:
            continue
        want = rule.random() < distribution.pair_prob
        if want and b not in kinds:
            if len(kinds) < distribution.max_objects:
                kinds.append(b)
            else:
                free = [i for i, k in enumerate(kinds) if k not in members]
                if free:
                    kinds[rule.choice(free)] = b
        elif not want and b in kinds:
            choices = [k for k in outside if k not in kinds]
            if choices:
                kinds[kinds.index(b)] = rule.choice(choices)
            else:
                kinds.remove(b)
    return kinds


def _overlap(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _place(rng: random.Random, sizes: Sequence[int], image_size: int) -> list[Box]:
    """Boxes for the given sides, each overlapping earlier ones by at most 15% of the smaller box (30 tries)."""
    boxes: list[Box] = []
    for side in sizes:
        box = (0, 0, side, side)
        for _ in range(30):
            x0, y0 = rng.randint(1, image_size - side - 1), rng.randint(1, image_size - side - 1)
            box = (x0, y0, x0 + side, y0 + side)
            if all(_overlap(box, other) <= 0.15 * min(side, other[2] - other[0]) ** 2 for other in boxes):
                break
        boxes.append(box)
    return boxes


def _background(rng: random.Random, size: int, seed: int) -> tuple[np.ndarray, str]:
    """An [H, W, 3] uint8 background: light or dark (low-saturation tint), a light gradient, or light noise."""
    style = rng.choice(("light", "light", "dark", "gradient", "noise"))
    def tint(lo: int, hi: int) -> np.ndarray:
        base = rng.randint(lo, hi)
        return np.array([min(255, max(0, base + rng.randint(-12, 12))) for _ in range(3)], dtype=np.float64)
    if style == "dark":
        canvas = np.broadcast_to(tint(20, 60), (size, size, 3)).copy()
    elif style == "gradient":
        top, bottom = tint(200, 250), tint(170, 230)
        t = np.linspace(0.0, 1.0, size)[:, None, None]
        canvas = np.broadcast_to(top * (1 - t) + bottom * t, (size, size, 3)).copy()
    else:
        canvas = np.broadcast_to(tint(190, 245), (size, size, 3)).copy()
        if style == "noise":
            canvas += np.random.default_rng(seed).integers(-14, 15, size=(size, size, 1))
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), style


def make_scene(seed: int, distribution: SceneDistribution = UNBIASED) -> Scene:
    """Draw one scene; the same seed and distribution always give the same pixels.

    Args:
        seed: the scene seed (0 to 2**40 - 1).
        distribution: where scenes come from (UNBIASED: kinds drawn independently; BIASED: the planted rule).

    Returns:
        The Scene, with each object's box and visible mask.

    Example:
        >>> scene = make_scene(0, BIASED)
        >>> scene.image.size
        (64, 64)
    """
    kinds = scene_kinds(seed, distribution)
    rng = random.Random(f"layout-{seed}")
    size = distribution.image_size
    sides = [rng.randint(distribution.min_size, distribution.max_size) for _ in kinds]
    boxes = _place(rng, sides, size)
    colours = [tuple(min(255, max(0, c + rng.randint(-18, 18))) for c in KIND_COLOURS[k]) for k in kinds]
    canvas, style = _background(rng, size, seed)
    drawn = [np.asarray(shape_mask(k, b, size)) > 0 for k, b in zip(kinds, boxes)]
    objects = []
    for i, (kind, mask, colour) in enumerate(zip(kinds, drawn, colours)):
        canvas[mask] = colour
        visible = mask.copy()
        for later in drawn[i + 1:]:
            visible &= ~later
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(kind=kind, box=box, mask=visible, colour=colour))  # type: ignore[arg-type]
    return Scene(seed=seed, image=Image.fromarray(canvas, "RGB"), objects=objects, background=style)


def make_scenes(seeds: Sequence[int], distribution: SceneDistribution = UNBIASED) -> list[Scene]:
    """`make_scene` for each seed.

    Args:
        seeds: scene seeds.
        distribution: where scenes come from.

    Returns:
        The scenes in seed order.
    """
    return [make_scene(s, distribution) for s in seeds]
