"""Where the model looked for one probe: contrastive IG over the photo's patches (chosen = the truthful answer),
with the grid, the convergence check and an overlay on the photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grains.errors import InputError
from grains.vlm.check.photo import open_photo
from grains.vlm.check.probes import Probe, make_probes
from grains.vlm.check.report import json_safe

if TYPE_CHECKING:
    from grains.models import LoadedModel

@dataclass
class ProbeHeatmap:
    """The contrastive patch heatmap of one probe: IG of log P(truthful answer) - log P(the other answer), so red
    patches push toward the truth and blue ones toward the wrong answer (for an absent object: toward a false
    "yes").

    Args:
        probe: the probe.
        chosen: the truthful answer (" Yes" or " No").
        rejected: the other answer.
        result: the AttributionResult.

    Example:
        >>> look = where_the_model_looked(lm, "photo.jpg", "cat", truth="no")
        >>> look.converged, look.overlay("photo.jpg").size
    """

    probe: Probe
    chosen: str
    rejected: str
    result: Any  # AttributionResult

    @property
    def grid(self) -> list[list[float]] | None:
        return self.result.image_grid

    @property
    def converged(self) -> bool:
        return self.result.converged

    def overlay(self, image: Any, alpha: float = 0.55) -> Any:
        """The photo with the heatmap blended over it (a PIL image of the photo's size)."""
        from grains.images import load_image
        from grains.viz.overlay import patch_overlay

        if self.grid is None:
            raise InputError("This model gave no patch grid for the image.")
        box = (self.result.extra or {}).get("crop_box")
        return patch_overlay(load_image(image), self.grid, alpha=alpha, box=tuple(box) if box else None)

    def summary(self) -> dict[str, Any]:
        r = self.result
        extra = r.extra or {}
        return json_safe({
            "object": self.probe.object, "truth": self.probe.truth, "question": self.probe.question,
            "chosen": self.chosen, "rejected": self.rejected, "f": r.f_input, "f_baseline": r.f_baseline,
            "delta": r.delta, "relative_delta": r.relative_delta, "converged": r.converged, "steps": r.steps,
            "image_share": extra.get("image_share"), "image_token_count": extra.get("image_token_count"),
            "grid_shape": [len(r.image_grid), len(r.image_grid[0])] if r.image_grid else None,
            "seconds": r.seconds,
            "legend": "red = pushes toward the truthful answer, blue = toward the wrong one",
        })


def where_the_model_looked(lm: LoadedModel, image: Any, probe: Probe | str, truth: str | None = None, steps: int = 16,
                           target: str = "sequence") -> ProbeHeatmap:
    """Contrastive IG over the photo's patches for one probe, chosen = the truthful answer ("No" for an absent
    object), rejected = the other, through `grains.attribute`.

    Args:
        lm: a loaded VLM.
        image: the photo (path, bytes or PIL).
        probe: a Probe from a report, or an object name (then give `truth`: "yes" or "no").
        truth: for an object name.
        steps: IG integration points.
        target: "sequence" or "last" (see grains.attribute).

    Returns:
        A ProbeHeatmap (the grid, the convergence delta, and `.overlay(image)`).

    Example:
        >>> look = where_the_model_looked(lm, "photo.jpg", report.unsteered.answers[2].probe)
        >>> look.summary()["image_share"]
    """
    from grains.attribution import attribute
    from grains.vlm.pope import NO, YES

    pil, info = open_photo(lm, image)
    if isinstance(probe, str):
        if truth not in ("yes", "no"):
            raise InputError("Say whether the object is in the photo: truth must be 'yes' or 'no'.")
        probe = make_probes(pil, [probe] if truth == "yes" else [], [probe] if truth == "no" else [],
                            digest=info["digest"])[0]
    chosen, rejected = (YES, NO) if probe.truth == "yes" else (NO, YES)
    with lm.lock:
        result = attribute(lm, probe.question, chosen, rejected, image=pil, steps=steps, target=target)
    return ProbeHeatmap(probe=probe, chosen=chosen, rejected=rejected, result=result)
