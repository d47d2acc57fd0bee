"""Attribution straight to pixels: Integrated Gradients of the same contrastive f over the processor's pixel_values
(text embeddings held fixed), summed per visual token and laid out on the same patch grids as the token heatmap.

f = log P(chosen | prompt, image) - log P(rejected | prompt, image); the path runs from a black image (or the
processor's mean colour) to the real one through the vision tower and projector, so this
says which PIXELS matter, where token IG says which merged image TOKENS matter. One forward and backward per
integration point (both sequences share one vision pass), Gauss-Legendre points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from grains.attribution import ContrastiveObjective, Target
from grains.encoding import EncodedExample, encode_example
from grains.errors import InputError
from grains.vlm.adapters import LAYOUT_KEY

if TYPE_CHECKING:
    from grains.models import LoadedModel

MAX_PIXEL_STEPS = 256
PixelBaseline = Literal["black", "mean"]


@dataclass
class PixelAttribution:
    """Pixel IG summed per visual token (`token_scores`, in image-token order) and laid out per view.

    Args:
        image_grid: the first view's grid.
        views: every view's grid, by name.
        token_scores: per image token, its pixels' summed scores.
        f_input: f at the image.
        f_baseline: f at the pixel baseline.
        delta: the completeness error.
        steps: integration points.
        seconds: wall time.
        extra: the baseline used and the layout.

    Example:
        >>> pixels = attribute_pixels(lm, "What is on the table?", " A cup", " A dog", "photo.jpg")
        >>> len(pixels.token_scores)
    """

    image_grid: list[list[float]]
    views: dict[str, list[list[float]]]
    token_scores: list[float]
    f_input: float
    f_baseline: float
    delta: float
    steps: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_delta(self) -> float:
        return abs(self.delta) / max(abs(self.f_input - self.f_baseline), 1e-8)


def _gauss_legendre(steps: int) -> tuple[list[float], list[float]]:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return [float((t + 1) / 2) for t in nodes], [float(w / 2) for w in weights]


class _PixelObjective:
    """f as a function of pixel_values: one vision pass, features scattered into both sequences."""

    def __init__(self, lm: LoadedModel, example: EncodedExample, target: Target):
        self.lm = lm
        self.adapter = lm.adapter
        self.example = example
        self.objective = ContrastiveObjective(lm, example, target)
        device = self.adapter.input_device
        self.ids = [torch.tensor([example.sequence_ids(w)], device=device) for w in ("plus", "minus")]
        with torch.no_grad():
            self.text = [self.adapter.text_embeddings(i) for i in self.ids]

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        extras = {**self.example.extras, "pixel_values": pixel_values}
        feats = self.adapter.image_features(extras)
        plus = self.adapter.merge_image_features(self.ids[0], self.text[0], feats)
        minus = self.adapter.merge_image_features(self.ids[1], self.text[1], feats)
        return self.objective(plus, minus)[0]


def attribute_pixels_example(lm: LoadedModel, example: EncodedExample, steps: int = 32, target: Target = "sequence",
                             baseline: PixelBaseline = "black") -> PixelAttribution:
    """Pixel IG for an encoded example with an image.

    Args:
        lm: a loaded vision-language model.
        example: an encoded example with an image.
        steps: integration points.
        target: "sequence" or "last".
        baseline: "black" or "mean" (the processor's normalised zero).

    Returns:
        The PixelAttribution.

    Example:
        >>> pixels = attribute_pixels_example(lm, encode_example(lm, "Cup?", " Yes", " No", image=pil), steps=16)
    """
    if not lm.is_vlm or LAYOUT_KEY not in example.extras:
        raise InputError("Pixel attribution needs a vision-language model and an image.")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_PIXEL_STEPS:
        raise InputError(f"Pixel IG steps must be a whole number from 1 to {MAX_PIXEL_STEPS}.")
    if baseline not in ("black", "mean"):
        raise InputError("The pixel baseline must be 'black' or 'mean'.")
    adapter = lm.adapter
    start = time.perf_counter()
    objective = _PixelObjective(lm, example, target)
    x = example.extras["pixel_values"].to(adapter.input_device, lm.dtype)
    base = adapter.pixel_baseline(x, lm.processor, baseline)
    total_grad = torch.zeros_like(x, dtype=torch.float32)
    alphas, weights = _gauss_legendre(steps)
    for alpha, weight in zip(alphas, weights):
        point = (base + alpha * (x - base)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(point), point)
        total_grad += weight * grad.float()
    attr = (x - base).float() * total_grad
    with torch.no_grad():
        f_input, f_base = float(objective(x)), float(objective(base))
    delta = float(attr.sum()) - (f_input - f_base)
    token_scores = adapter.pixel_token_scores(attr.cpu(), example.extras).double()
    layout = example.extras[LAYOUT_KEY]
    grids: dict[str, list[list[float]]] = {}
    for view in layout["views"]:
        rows, cols = view["shape"]
        grid = torch.zeros(rows * cols, dtype=torch.float64)
        for score, cell in zip(token_scores.tolist(), view["cells"]):
            if cell >= 0:
                grid[cell] += score
        grids[view["name"]] = grid.view(rows, cols).tolist()
    main = layout["views"][0]
    extra = {"grid_shape": list(main["shape"]), "grid_view": main["name"], "crop_box": list(main["box"]),
             "image_size": list(layout["image_size"]), "pixel_total": float(attr.sum()),
             "token_total": float(token_scores.sum()), "baseline": baseline,
             "unassigned": float(attr.sum()) - float(token_scores.sum())}
    return PixelAttribution(image_grid=grids[main["name"]], views={k: v for k, v in grids.items() if k != main["name"]},
                            token_scores=token_scores.tolist(), f_input=f_input, f_baseline=f_base, delta=delta,
                            steps=steps, seconds=time.perf_counter() - start, extra=extra)


def attribute_pixels(lm: LoadedModel, prompt: str, chosen: str, rejected: str, image: Any, steps: int = 32,
                     target: Target = "sequence", baseline: PixelBaseline = "black") -> PixelAttribution:
    """Integrated Gradients of log P(chosen) - log P(rejected) over the image's pixels, summed per patch.

    Args:
        lm: a loaded vision-language model.
        prompt: the prompt.
        chosen: the preferred answer.
        rejected: the other answer.
        image: the image.
        steps, target, baseline: as in `attribute_pixels_example`.

    Returns:
        The PixelAttribution.

    Example:
        >>> pixels = attribute_pixels(lm, "What is on the table?", " A cup", " A dog", "photo.jpg", steps=16)
        >>> pixels.image_grid
    """
    if image is None:
        raise InputError("Pixel attribution needs an image.")
    example = encode_example(lm, prompt, chosen, rejected, image=image)
    return attribute_pixels_example(lm, example, steps, target, baseline)
