"""Finished side-by-side continuations kept in memory for every session of this server: the same prompt, image,
steering and decoding settings on the same model give the same two texts (greedy decoding, or sampling from a
seed), so a class pressing Generate on the teacher's example computes it once and everyone else reads it at once.

What makes two runs the same: the loaded model object, the prompt as typed and its format, the image's bytes, the
vector's numbers, layer, strength and norm switch, and every decoding setting (tokens, sampling, temperature, top-p,
seed, stop sequences). A run stopped before its end is not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from components.result_cache import ResultCache, file_digest, steering_digest

if TYPE_CHECKING:
    from grains.decoding import GenerationSettings
    from grains.generation import PairedGeneration
    from grains.models import LoadedModel
    from grains.steering import Steering

MAX_ENTRIES = 64  # two short texts each


@dataclass
class FinishedGeneration:
    """A finished side-by-side run: its texts, how many streamed steps it took (None: not streamed), and whether a
    copy came from here."""

    pair: PairedGeneration
    steps: int | None
    cached: bool = field(default=False)


class GenerationCache(ResultCache[FinishedGeneration]):
    """Finished side-by-side runs by question (components.result_cache.ResultCache).

    Args:
        max_entries: runs kept.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES):
        super().__init__(max_entries)

    def mark(self, result: FinishedGeneration) -> None:
        result.cached = True

    def unmark(self, result: FinishedGeneration) -> None:
        result.cached = False

    @staticmethod
    def key(lm: LoadedModel, prompt: str, prompt_format: str | None, image_path: str | None,
            steering: Steering | None, settings: GenerationSettings) -> tuple:
        """The question: model object, prompt and resolved format, image digest, steering and decoding settings (greedy
        decoding ignores the temperature, top-p and seed, so they are left out of its key)."""
        sampling = ((float(settings.temperature), float(settings.top_p), int(settings.seed)) if settings.do_sample
                    else None)
        fmt = lm.with_format(prompt_format).prompt_style  # "raw" and the model's default (None) are one question
        return (id(lm.model), prompt, fmt, file_digest(image_path), steering_digest(steering),
                settings.max_new_tokens, bool(settings.do_sample), sampling, tuple(settings.stop))


GENERATIONS = GenerationCache()
