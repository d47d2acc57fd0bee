"""Finished attributions kept in memory for every session of this server: the same question (model, exact text,
image, IG settings, steering) asked again, by the same user or another, is answered from here instead of another
minute of integrated gradients on a CPU. A classroom pressing Attribute on the first screen's example computes it
once.

What makes a question the same is everything the result depends on: the loaded model object itself (a model
dropped from the model cache and loaded again starts afresh), the prompt format, the three texts, the image's
bytes, steps, target, baseline, integration rule and tolerance, and for a steered run the vector's numbers, layers,
strength and norm switch. Each caller gets its own copy; the copy's `extra["cached"]` says it was served from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from components.result_cache import ResultCache, file_digest, steering_digest

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.models import LoadedModel
    from grains.steering import Steering

MAX_ENTRIES = 32  # a result is a few lists of floats: 32 of them are small next to one model


def is_cached(result: AttributionResult) -> bool:
    """Whether `result` is a copy the cache answered with (not computed for this request)."""
    return bool((result.extra or {}).get("cached"))


class AttributionCache(ResultCache["AttributionResult"]):
    """Finished AttributionResults by question (components.result_cache.ResultCache); a copy served from here has
    `extra["cached"]` set.

    Args:
        max_entries: results kept.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES):
        super().__init__(max_entries)

    def mark(self, result: AttributionResult) -> None:
        result.extra["cached"] = True

    def unmark(self, result: AttributionResult) -> None:
        result.extra.pop("cached", None)

    @staticmethod
    def key(lm: LoadedModel, inputs: dict[str, Any], steering: Steering | None = None) -> tuple:
        """The question: model object, prompt format, texts, image digest, IG settings and steering."""
        return (id(lm.model), inputs.get("prompt_format"), inputs["prompt"], inputs["chosen"], inputs["rejected"],
                file_digest(inputs.get("image")), inputs["steps"], inputs["target"], inputs["baseline"],
                inputs["points"], inputs["tolerance"], steering_digest(steering))


ATTRIBUTIONS = AttributionCache()
