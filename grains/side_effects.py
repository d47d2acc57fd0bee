"""What steering costs: how far it moves the model on neutral text, and whether steered text degenerates.

Two measures, reported beside every steered result and used as a budget when `build` chooses a strength:
- KL: the mean over neutral prompts of KL(P_unsteered || P_steered) of the next-token distribution at the end of
  each prompt, in nats. Exactly 0 at strength 0.
- Repetition: greedy continuations of neutral prompts, unsteered and steered: distinct-2 of the steered texts
  relative to the unsteered ones, and the share of continuations stuck in a repeated 4-gram (see grains.fluency).

The neutral prompts ship in assets/data/neutral_prompts.jsonl (written for this project; see assets/NOTICE.md).
One prompt set for every KL figure: `kl_meter(lm)` measures on all of them, and build's budget screen, the vector
card and metadata, Compare's KL meter and evaluate's side effects all use it, so a budget is enforced on the very
prompts it is reported on (build used to screen on the first 24 and report on all 60).
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import Cancelled, InputError
from grains.prefix_cache import CachedRows, supports
from grains.steering import Steering

if TYPE_CHECKING:
    from grains.models import LoadedModel

NEUTRAL_PROMPTS = Path(__file__).resolve().parent.parent / "assets" / "data" / "neutral_prompts.jsonl"
DEFAULT_KL_BUDGET = 0.5  # nats: build never chooses a cell that moves neutral next-token distributions further
KL_PROMPT_COUNT = sum(1 for line in NEUTRAL_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip())
SELECTION_PROMPTS = KL_PROMPT_COUNT  # kept for older callers: the budget is screened on every neutral prompt now
REPORT_GENERATIONS = 16  # neutral prompts continued greedily for the repetition measures
CONTINUATION_TOKENS = 30
PROMPTS_PER_GENERATE = 16  # continuations batched into one generate call (2 rows each: unsteered, steered)
ROWS_PER_FORWARD = 8


def load_neutral_prompts(path: str | Path | None = None, limit: int | None = None) -> list[str]:
    """The neutral prompts (JSONL rows with a "prompt" key).

    Args:
        path: a JSONL file (default: the shipped set).
        limit: keep only the first `limit`.

    Returns:
        The prompt texts.

    Example:
        >>> prompts = load_neutral_prompts(limit=4)
        >>> len(prompts)
        4
    """
    from grains.data.files import iter_jsonl, read_text

    where, text = read_text(path or NEUTRAL_PROMPTS)
    prompts = []
    for line, row in iter_jsonl(text, str(where)):
        value = row.get("prompt")
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}, line {line}: a neutral prompt row needs a non-empty \"prompt\".")
        prompts.append(value)
    return prompts[:limit] if limit else prompts


def _last_logprobs(lm: LoadedModel, prompts: list[str]) -> torch.Tensor:
    """log P(next token | prompt) at the end of each prompt, [N, V] in float32 on the CPU."""
    from grains.prompts import pad_aligned, pad_right

    encoded = [lm.encode_prompt(p).ids for p in prompts]
    out = []
    pad = lm.tokenizer.pad_token_id or 0
    device = lm.adapter.input_device
    with torch.no_grad():
        for start in range(0, len(encoded), ROWS_PER_FORWARD):
            rows = encoded[start:start + ROWS_PER_FORWARD]
            if lm.adapter.is_vlm:  # their position ids are their own (M-RoPE): right-pad, pick each row's end
                ids, mask = pad_right(rows, pad)
                logits = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                last = torch.tensor([len(r) - 1 for r in rows], device=logits.device)
                picked = logits[torch.arange(len(rows), device=logits.device), last]
            else:  # every prompt ends in the last column: only it reaches the output layer
                ids, mask, positions = pad_aligned(rows, None, pad)
                picked = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  position_ids=positions.to(device), use_cache=False, logits_to_keep=1).logits[:, -1]
            out.append(torch.log_softmax(picked.float(), dim=-1).cpu())
    return torch.cat(out)


def kl_meter(lm: LoadedModel, prompts: list[str] | None = None, layers: Sequence[int] = ()) -> NeutralKL:
    """The KL meter every side-effect figure uses: build's budget screen, the vector card, Compare's meter and
    evaluate's side effects, all on the same neutral prompts (the full shipped set unless `prompts` is given).

    Args:
        lm: the model.
        prompts: neutral prompts (default: all of assets/data/neutral_prompts.jsonl, KL_PROMPT_COUNT of them).
        layers: layers the unsteered pass keeps the hidden states of (the steered layers to come: each is then
            reached without running the layers below it again).

    Returns:
        A NeutralKL with the unsteered side computed; `.mean(steering)` is the figure to enforce and to report.

    Example:
        >>> kl_meter(lm).mean(Steering.create(lm, vector, 9, 0.3))
    """
    return NeutralKL(lm, prompts, layers)


class NeutralKL:
    """KL(P_unsteered || P_steered) of next-token distributions on neutral prompts, the unsteered side computed once.

    Args:
        lm: the model.
        prompts: neutral prompts (default: the shipped set).
        layers: layers the unsteered pass keeps (text models), so that steered cells there start from them.

    Example:
        >>> kl = NeutralKL(lm)
        >>> kl.mean(Steering.create(lm, vector, 9, 0.3))
    """

    def __init__(self, lm: LoadedModel, prompts: list[str] | None = None, layers: Sequence[int] = ()):
        self.lm = lm
        self.prompts = prompts if prompts is not None else load_neutral_prompts()
        if not self.prompts:
            raise InputError("There are no neutral prompts to measure side effects on.")
        self._indices = list(range(len(self.prompts)))
        self._cache: CachedRows | None = None
        with lm.lock:
            if supports(lm):  # the hidden states below a steered layer are kept: each cell runs the layers above it
                self._cache = CachedRows(lm, [(lm.encode_prompt(p).ids, []) for p in self.prompts], layers=layers)
                self.unsteered = self._cache.last_logprobs()
            else:
                self.unsteered = _last_logprobs(lm, self.prompts)

    def first(self, n: int) -> NeutralKL:
        """The same measure over the first `n` prompts, reusing the unsteered side."""
        part = copy.copy(self)
        part.prompts, part.unsteered, part._indices = self.prompts[:n], self.unsteered[:n], self._indices[:n]
        return part

    def per_prompt(self, steering: Steering | None) -> list[float]:
        """KL in nats for each prompt (all 0 without steering or at strength 0)."""
        if steering is None or steering.is_identity:
            return [0.0] * len(self.prompts)
        if self._cache is not None:
            with self.lm.lock:
                steered = self._cache.last_logprobs(steering, self._indices)
        else:
            with self.lm.lock, steering.apply(self.lm):
                steered = _last_logprobs(self.lm, self.prompts)
        p = self.unsteered.exp()
        kl = (p * (self.unsteered - steered)).sum(dim=-1).clamp_min(0.0)
        return kl.tolist()

    def mean(self, steering: Steering | None) -> float:
        """The mean KL over the prompts, in nats."""
        return statistics.fmean(self.per_prompt(steering))


@dataclass
class SideEffects:
    """What a steering setting costs on neutral text. `kl_mean` in nats; distinct-2 and stuck shares in [0, 1].

    Args:
        kl_mean: mean KL(P_unsteered || P_steered) over the neutral prompts, in nats.
        kl_max: the largest.
        n_prompts: neutral prompts used.
        distinct2_unsteered, distinct2_steered: distinct bigram share of the continuations.
        stuck_unsteered, stuck_steered: share of continuations stuck repeating.
        n_generated: continuations compared.
        kl_budget: the budget compared against.
        examples: a few prompt / unsteered / steered continuations.

    Example:
        >>> effects = measure_side_effects(lm, steering)
        >>> effects.reading()
    """

    kl_mean: float
    kl_max: float
    n_prompts: int
    distinct2_unsteered: float | None = None
    distinct2_steered: float | None = None
    stuck_unsteered: float | None = None
    stuck_steered: float | None = None
    n_generated: int = 0
    kl_budget: float | None = DEFAULT_KL_BUDGET
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def distinct2_ratio(self) -> float | None:
        """distinct-2 of the steered continuations relative to the unsteered ones (1.0 = as varied)."""
        if self.distinct2_steered is None or not self.distinct2_unsteered:
            return None
        return self.distinct2_steered / self.distinct2_unsteered

    @property
    def within_budget(self) -> bool | None:
        """Whether the KL is within the budget (None without a budget)."""
        return None if self.kl_budget is None else self.kl_mean <= self.kl_budget

    def reading(self) -> str:
        """One plain line, e.g. "KL 0.12 nats on 60 neutral prompts (budget 0.5); distinct-2 0.97x unsteered; ..."."""
        parts = [f"KL {self.kl_mean:.3f} nats on {self.n_prompts} neutral prompts"
                 + (f" (budget {self.kl_budget:g}{'' if self.within_budget else ': over'})"
                    if self.kl_budget is not None else "")]
        if self.distinct2_ratio is not None:
            parts.append(f"distinct-2 {self.distinct2_ratio:.2f}x unsteered")
        if self.stuck_steered is not None:
            parts.append(f"{self.stuck_steered:.0%} of {self.n_generated} continuations stuck in a repeated 4-gram "
                         f"(unsteered {self.stuck_unsteered:.0%})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what `eval --json` prints under "side_effects")."""
        return {"kl_mean": self.kl_mean, "kl_max": self.kl_max, "kl_unit": "nats", "n_prompts": self.n_prompts,
                "kl_budget": self.kl_budget, "within_budget": self.within_budget,
                "distinct2_unsteered": self.distinct2_unsteered, "distinct2_steered": self.distinct2_steered,
                "distinct2_ratio": self.distinct2_ratio, "stuck_unsteered": self.stuck_unsteered,
                "stuck_steered": self.stuck_steered, "n_generated": self.n_generated, "reading": self.reading(),
                "examples": self.examples}


def measure_side_effects(lm: LoadedModel, steering: Steering | None, prompts: list[str] | None = None,
                         generations: int = REPORT_GENERATIONS, max_new_tokens: int = CONTINUATION_TOKENS,
                         kl_budget: float | None = DEFAULT_KL_BUDGET, kl: NeutralKL | None = None,
                         progress: Any = None, should_stop: Any = None) -> SideEffects:
    """KL on neutral prompts and the repetition of greedy continuations, steered against unsteered.

    Args:
        lm: the model.
        steering: the setting to measure (None or strength 0: no side effects, exactly).
        prompts: neutral prompts (default: the shipped set).
        generations: how many prompts to continue greedily for the repetition measures (0: skip them).
        max_new_tokens: continuation length.
        kl_budget: the budget to compare against (None: none).
        kl: a NeutralKL to reuse (its unsteered side already computed).
        progress: called with (fraction, message) after the KL and after each batch of continuations.
        should_stop: polled before and during the continuations; True raises `Cancelled`.

    Returns:
        The SideEffects.

    Example:
        >>> measure_side_effects(lm, Steering.create(lm, vector, 9, 0.3), generations=4).kl_mean
    """
    from grains.fluency import distinct_n, repeated_ngram_share
    from grains.generation import GenerationSettings, generate_pairs

    meter = kl or NeutralKL(lm, prompts)
    per_prompt = meter.per_prompt(steering)
    chosen = meter.prompts[:generations]
    calls = [chosen[i:i + PROMPTS_PER_GENERATE] for i in range(0, len(chosen), PROMPTS_PER_GENERATE)]
    if progress:
        progress(1 / (1 + len(calls)), f"cost check: KL on {len(per_prompt)} neutral prompts")
    result = SideEffects(kl_mean=statistics.fmean(per_prompt), kl_max=max(per_prompt), n_prompts=len(per_prompt),
                         kl_budget=kl_budget)
    if chosen:
        settings = GenerationSettings(max_new_tokens=max_new_tokens)
        pairs = []
        for i, batch in enumerate(calls):
            try:
                pairs += generate_pairs(lm, batch, steering, settings=settings, should_stop=should_stop)
            except Cancelled as exc:
                raise Cancelled(f"Stopped by the user while measuring side effects ({len(pairs)} of {len(chosen)} "
                                "continuations).") from exc
            if progress:
                progress((2 + i) / (1 + len(calls)), f"cost check: {len(pairs)}/{len(chosen)} neutral continuations")
        unsteered = [p.unsteered for p in pairs]
        steered = [p.steered for p in pairs]
        result.distinct2_unsteered = distinct_n(unsteered, 2)
        result.distinct2_steered = distinct_n(steered, 2)
        result.stuck_unsteered = repeated_ngram_share(unsteered, 4)
        result.stuck_steered = repeated_ngram_share(steered, 4)
        result.n_generated = len(pairs)
        result.examples = [{"prompt": p, "unsteered": u, "steered": s}
                           for p, u, s in zip(chosen[:3], unsteered[:3], steered[:3])]
    return result
