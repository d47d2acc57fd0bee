"""Decoding pieces shared by every generate call: the settings, stop sequences, paired sampling and a stop flag.

Sampling is paired: the rows of one unsteered/steered pair draw the same uniform random number at each step
(inverse-CDF sampling over the token ids in a fixed order, through a logits processor), so at strength 0 steered
and unsteered texts are identical and any difference between the rows comes from steering, not from sampling noise.
Different pairs (different prompts in one batch) draw independently: pair g's draws come from its own generator,
seeded by `pair_seed(seed, g)`.

Stop sequences (`GenerationSettings.stop`) end a row as soon as its continuation contains one of the strings; the
text is cut just before it. The same check runs on every row, so at strength 0 both rows stop at the same place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import LogitsProcessor, StoppingCriteria

from grains.errors import InputError

if TYPE_CHECKING:
    from grains.models import LoadedModel

MAX_NEW_TOKENS = 1024
MAX_STOP_SEQUENCES = 8
MAX_STOP_LENGTH = 100
QA_STOP = "\nQ:"  # a new "Q: ..." turn after a qa-style answer


@dataclass
class GenerationSettings:
    """Decoding settings shared by both rows. Greedy unless `do_sample`.

    Args:
        max_new_tokens: tokens to generate per row (1 to MAX_NEW_TOKENS).
        do_sample: sample instead of greedy decoding (the two rows of a pair share their random draws; different
            prompts draw independently).
        temperature: sampling temperature (> 0).
        top_p: nucleus sampling mass (0 < top_p <= 1).
        seed: the sampling seed.
        stop: stop sequences; a row is cut before the first one its continuation contains.

    Example:
        >>> settings = GenerationSettings(max_new_tokens=30, do_sample=True, seed=1, stop=("\\n",))
        >>> pair = grains.generate_pair(lm, "The weather today", vector, settings=settings)
    """

    max_new_tokens: int = 40
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop sequences: a row ends when its continuation contains one (cut before it)

    def check(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise InputError("max_new_tokens must be a whole number.")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise InputError(f"max_new_tokens must be from 1 to {MAX_NEW_TOKENS}.")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise InputError("The temperature must be a positive number.")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise InputError("top_p must be in (0, 1].")
        if isinstance(self.stop, str) or not all(isinstance(x, str) for x in self.stop):
            raise InputError("Stop sequences must be a list of strings.")
        self.stop = tuple(self.stop)
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise InputError(f"Give at most {MAX_STOP_SEQUENCES} stop sequences.")
        if any(not x or len(x) > MAX_STOP_LENGTH for x in self.stop):
            raise InputError(f"Each stop sequence must have 1 to {MAX_STOP_LENGTH} characters.")


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, str | None]:
    """The text up to (not including) the earliest stop sequence in it, and that sequence (None when none occurs).

    Args:
        text: a continuation.
        stop: stop sequences.

    Returns:
        (cut text, the stop sequence found or None).

    Example:
        >>> cut_at_stop("Paris.\\nQ: next", ("\\nQ:",))
        ('Paris.', '\\nQ:')
    """
    found = [(text.find(x), x) for x in stop if x and x in text]
    if not found:
        return text, None
    position, which = min(found)
    return text[:position], which


class StopOnSequences(StoppingCriteria):
    """Ends each row of a batch once its decoded continuation contains a stop sequence (per row, so a finished row
    pads while the other goes on).

    Args:
        lm: the model (its tokenizer decodes the continuations).
        stop: the stop sequences.
        prompt_len: where the continuations start.

    Example:
        >>> criteria = StoppingCriteriaList([StopOnSequences(lm, ("\\n",), prompt_len)])
    """

    def __init__(self, lm: LoadedModel, stop: tuple[str, ...], prompt_len: int):
        self.tokenizer = lm.tokenizer
        self.stop = tuple(stop)
        self.prompt_len = prompt_len
        self.window = max(len(x) for x in self.stop) + 16 if self.stop else 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = []
        for row in input_ids:
            tail = row[self.prompt_len:][-self.window:] if self.window else row[:0]
            text = self.tokenizer.decode(tail, skip_special_tokens=True)
            done.append(any(x in text for x in self.stop))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def pair_seed(seed: int, pair: int) -> int:
    """The seed of pair `pair`'s draws: `seed` itself for pair 0 (so a lone pair is reproducible by its seed), an
    independent stream derived from (seed, pair) for the others."""
    if pair == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, pair]).generate_state(1)[0])


class SharedUniformSampler(LogitsProcessor):
    """Samples rows with shared uniform draws: the rows of one group (an unsteered/steered pair) share each step's
    draw, so rows with equal distributions pick equal tokens; different groups draw independently.

    The distribution is the model's, tempered and top-p filtered; the token is found by inverse CDF over the token
    ids in their fixed order, which also keeps steered and unsteered picks together where their distributions are
    close. Returns logits that are 0 at the picked token and -inf elsewhere, for greedy decoding to take.

    Args:
        temperature: the sampling temperature.
        top_p: the nucleus mass.
        seed: the draws' seed (group g uses `pair_seed(seed, g)`).
        rows_per_group: consecutive rows that share their draws (2 for pairs); None: every row shares one draw.

    Example:
        >>> processors = LogitsProcessorList([SharedUniformSampler(0.8, 0.95, seed=1, rows_per_group=2)])
    """

    def __init__(self, temperature: float, top_p: float, seed: int, rows_per_group: int | None = None):
        self.temperature = temperature
        self.top_p = top_p
        self.seed = int(seed)
        self.rows_per_group = rows_per_group
        self.generators: list[torch.Generator] = []

    def _draws(self, rows: int) -> torch.Tensor:
        size = rows if self.rows_per_group is None else self.rows_per_group
        groups = math.ceil(rows / size)
        while len(self.generators) < groups:
            self.generators.append(torch.Generator().manual_seed(pair_seed(self.seed, len(self.generators))))
        u = torch.stack([torch.rand((), generator=g) for g in self.generators[:groups]])
        return u.repeat_interleave(size)[:rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ordered, order = probs.sort(dim=-1, descending=True)
            before = ordered.cumsum(dim=-1) - ordered  # mass strictly above each token
            ordered = ordered.masked_fill(before >= self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, ordered)
        cdf = probs.cumsum(dim=-1)
        u = self._draws(probs.shape[0]).to(cdf.device)
        target = (u * cdf[:, -1]).unsqueeze(-1)
        picked = torch.searchsorted(cdf, target).clamp_max(probs.shape[-1] - 1)
        # never land on a zero-probability token through rounding at a CDF step
        picked = torch.where(probs.gather(-1, picked) > 0, picked, probs.argmax(dim=-1, keepdim=True))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, picked.to(scores.device), 0.0)


class StopWhen(StoppingCriteria):
    """Ends every row once `stop()` is true (polled at each generated token).

    Args:
        stop: the flag to poll (a user's Stop button, an Event's is_set).

    Example:
        >>> criteria = StoppingCriteriaList([StopWhen(event.is_set)])
    """

    def __init__(self, stop: Callable[[], bool]):
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), bool(self.stop()), dtype=torch.bool, device=input_ids.device)
