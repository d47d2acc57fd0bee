"""Unsteered and steered continuations of one prompt (or several), side by side, in one batched generate call.

The two rows of a pair share their sampling draws and their stop checks (grains.decoding), so at strength 0 the
texts are identical and any difference between them comes from steering.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from grains.decoding import (  # noqa: F401 - GenerationSettings, cut_at_stop, QA_STOP... are imported from here too
    MAX_NEW_TOKENS,
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    QA_STOP,
    GenerationSettings,
    SharedUniformSampler,
    StopOnSequences,
    StopWhen,
    cut_at_stop,
    pair_seed,
)
from grains.errors import Cancelled
from grains.lanes import sampling_turn
from grains.memory import oom_guard
from grains.steering import Steering, SteeringLike, as_steering

if TYPE_CHECKING:
    from grains.models import LoadedModel


@dataclass
class PairedGeneration:
    """Two continuations of one prompt, unsteered and steered, from one generate call.

    Args:
        unsteered: row 0's text.
        steered: row 1's text.
        prompt_text: the exact text the model saw.
        stopped_unsteered: the stop sequence that ended row 0, or None.
        stopped_steered: the stop sequence that ended row 1, or None.

    Example:
        >>> pair = grains.generate_pair(lm, "The weather today", vector)
        >>> pair.unsteered == pair.steered  # at strength 0 they are equal exactly
    """
    unsteered: str
    steered: str
    prompt_text: str
    stopped_unsteered: str | None = None  # the stop sequence that ended the row (None: length or end of text)
    stopped_steered: str | None = None


def _generate_kwargs(lm: LoadedModel, settings: GenerationSettings, rows_per_group: int | None = None
                     ) -> dict[str, Any]:
    # Greedy decoding over the processor's pick: sampling, when on, happens in SharedUniformSampler.
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": False,
                              "pad_token_id": lm.tokenizer.pad_token_id,
                              "temperature": None, "top_p": None, "top_k": None}
    if settings.do_sample:
        kwargs["logits_processor"] = LogitsProcessorList(
            [SharedUniformSampler(settings.temperature, settings.top_p, settings.seed, rows_per_group)])
    return kwargs


def _batch_inputs(lm: LoadedModel, prompt: str, image: Any, batch: int) -> tuple[dict[str, Any], str, int]:
    enc = lm.encode_prompt(prompt, image=image)
    ids = torch.tensor([enc.ids] * batch, dtype=torch.long)
    inputs = lm.adapter.generation_inputs(ids, lm.adapter.expand_extras(enc.extras, batch) if enc.extras else None)
    inputs.setdefault("attention_mask", torch.ones_like(ids).to(ids.device if "input_ids" not in inputs
                                                                 else inputs["input_ids"].device))
    return inputs, enc.text, len(enc.ids)


def _steering_context(lm: LoadedModel, steering: Steering | None, rows: list[bool] | None) -> AbstractContextManager:
    return nullcontext() if steering is None else steering.apply(lm, rows)


def _decode(lm: LoadedModel, rows: torch.Tensor, prompt_len: int) -> list[str]:
    return [lm.tokenizer.decode(r[prompt_len:], skip_special_tokens=True) for r in rows]


def _stopping(lm: LoadedModel, settings: GenerationSettings, prompt_len: int,
              extra: list[StoppingCriteria] | None = None) -> dict[str, Any]:
    criteria = list(extra or [])
    if settings.stop:
        criteria.append(StopOnSequences(lm, settings.stop, prompt_len))
    return {"stopping_criteria": StoppingCriteriaList(criteria)} if criteria else {}


def _prepare(lm: LoadedModel, steering: SteeringLike, layer: Any, strength: float | None,
             settings: GenerationSettings | None, normalize: bool, prompt_format: str | None,
             allow_other_model: bool) -> tuple[Any, Steering | None, GenerationSettings]:
    settings = settings or GenerationSettings()
    settings.check()
    lm = lm.with_format(prompt_format)
    return lm, as_steering(lm, steering, layer, strength, normalize, allow_other_model), settings


def _generate(lm: LoadedModel, inputs: dict[str, Any], prompt_len: int, steering: Steering | None,
              settings: GenerationSettings, steer_rows: list[bool] | None,
              extra: list[StoppingCriteria] | None = None, rows_per_group: int | None = None
              ) -> list[tuple[str, str | None]]:
    """One generate call (the caller holds the model's lock); per row, the text cut before its stop sequence and
    the stop sequence found."""
    with sampling_turn(settings.do_sample), _steering_context(lm, steering, steer_rows), torch.no_grad():
        torch.manual_seed(settings.seed)
        out = lm.model.generate(**inputs, **_generate_kwargs(lm, settings, rows_per_group),
                                **_stopping(lm, settings, prompt_len, extra))
    return [cut_at_stop(t, settings.stop) for t in _decode(lm, out, prompt_len)]


def _run(lm: LoadedModel, prompt: str, steering: Steering | None, settings: GenerationSettings, image: Any,
         steer_rows: list[bool] | None) -> tuple[list[tuple[str, str | None]], str]:
    """One generate call over len(steer_rows) (or 1) copies of the prompt; returns (text, stop sequence found) per
    row, each text cut before its stop sequence, and the prompt text."""
    with lm.lock, oom_guard("generation", "use fewer new tokens."):
        inputs, text, prompt_len = _batch_inputs(lm, prompt, image, len(steer_rows) if steer_rows else 1)
        return _generate(lm, inputs, prompt_len, steering, settings, steer_rows), text


def generate_pair(lm: LoadedModel, prompt: str, steering: SteeringLike = None, layer: Any = None,
                  strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                  normalize: bool = True, prompt_format: str | None = None,
                  allow_other_model: bool = False) -> PairedGeneration:
    """Row 0 unsteered, row 1 steered, in one generate call with shared random draws.

    Args:
        lm: the loaded model.
        prompt: the prompt as the user wrote it (formatted by `prompt_format`, default the model's).
        steering: a `Steering`, or a `SteeringVector` with `layer` and `strength` (default: its suggestions).
        layer: layer(s) for a bare vector.
        strength: strength for a bare vector.
        settings: decoding settings (greedy by default; sampling is paired across the rows).
        image: an image for a VLM.
        normalize: keep each token's norm (bare vectors only).
        prompt_format: "raw", "qa" or "chat" for this call.
        allow_other_model: accept a vector built for another model.

    Returns:
        The two continuations (each cut before the first of `settings.stop` it contains, with the sequence that
        stopped it) and the exact prompt text the model saw. Without steering both rows are unsteered; at strength 0
        the steered text equals the unsteered text exactly, sampled or not.

    Example:
        >>> pair = grains.generate_pair(lm, "Q: Is it safe to swim after eating?\\nA:", built.vector)
        >>> print(pair.unsteered, "|", pair.steered)
    """
    lm, chosen, settings = _prepare(lm, steering, layer, strength, settings, normalize, prompt_format,
                                    allow_other_model)
    ((unsteered, stop_u), (steered, stop_s)), text = _run(lm, prompt, chosen, settings, image, [False, True])
    return PairedGeneration(unsteered=unsteered, steered=steered, prompt_text=text, stopped_unsteered=stop_u,
                            stopped_steered=stop_s)


def _left_padded_inputs(lm: LoadedModel, prompts: Sequence[str], copies: int) -> tuple[dict[str, Any], list[str], int]:
    """`copies` rows per prompt, left-padded so every prompt ends in the same column (generate derives the position
    ids from the attention mask); returns the inputs, the exact prompt texts and the padded width."""
    encodings = [lm.encode_prompt(p) for p in prompts]
    width = max(len(e.ids) for e in encodings)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(e.ids)) + list(e.ids) for e in encodings for _ in range(copies)],
                       dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(e.ids)) + [1] * len(e.ids) for e in encodings for _ in range(copies)],
                        dtype=torch.long)
    inputs = lm.adapter.generation_inputs(ids)
    inputs["attention_mask"] = mask.to(inputs["input_ids"].device)
    return inputs, [e.text for e in encodings], width


def generate_pairs(lm: LoadedModel, prompts: Sequence[str], steering: SteeringLike = None,
                   settings: GenerationSettings | None = None,
                   should_stop: Callable[[], bool] | None = None) -> list[PairedGeneration]:
    """`generate_pair` for several text prompts at once: one generate call over 2 rows per prompt.

    Each prompt gets an unsteered and a steered row, left-padded to a common width (padding is masked out, so each
    text is what `generate_pair` gives up to floating-point rounding). Vision-language models, whose position ids
    are their own, take one call per prompt.

    Args:
        lm: the loaded model.
        prompts: prompts as written (formatted in the model's prompt format).
        steering: a `Steering` (None: both rows unsteered).
        settings: decoding settings, shared by every row (when sampling, the two rows of a pair share their random
            draws and different prompts draw independently).
        should_stop: polled before the call and at every generated token; True raises `Cancelled`.

    Returns:
        One PairedGeneration per prompt, in order.

    Example:
        >>> pairs = generate_pairs(lm, ["The weather today", "My favourite food"], Steering.create(lm, v, 9, 0.3))
    """
    if not prompts:
        return []

    def stopped() -> bool:
        return bool(should_stop and should_stop())

    def check() -> None:
        if stopped():
            raise Cancelled("Stopped by the user during generation.")

    if lm.is_vlm:  # one call per prompt, each pair with its own draws (pair_seed), as the batched path draws them
        pairs = []
        for i, p in enumerate(prompts):
            check()
            own = replace(settings, seed=pair_seed(settings.seed, i)) if settings else None
            pairs.append(generate_pair(lm, p, steering, settings=own))
        return pairs
    check()
    lm, chosen, settings = _prepare(lm, steering, None, None, settings, True, None, False)
    with lm.lock, oom_guard("generation", "use fewer new tokens."):
        inputs, texts, width = _left_padded_inputs(lm, prompts, 2)
        rows = _generate(lm, inputs, width, chosen, settings, [False, True] * len(prompts),
                         [StopWhen(stopped)] if should_stop else None, rows_per_group=2)
    check()
    return [PairedGeneration(unsteered=rows[2 * i][0], steered=rows[2 * i + 1][0], prompt_text=texts[i],
                             stopped_unsteered=rows[2 * i][1], stopped_steered=rows[2 * i + 1][1])
            for i in range(len(prompts))]


def generate_one(lm: LoadedModel, prompt: str, steering: SteeringLike = None, layer: Any = None,
                 strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                 normalize: bool = True, prompt_format: str | None = None, allow_other_model: bool = False) -> str:
    """A single continuation, steered when `steering` is given.

    Args:
        lm, prompt, steering, layer, strength, settings, image, normalize, prompt_format, allow_other_model: as in
            `generate_pair`.

    Returns:
        The continuation text (cut before the first of `settings.stop` it contains).

    Example:
        >>> text = grains.generate_one(lm, "The weather today", vector, strength=0.2)
    """
    lm, chosen, settings = _prepare(lm, steering, layer, strength, settings, normalize, prompt_format,
                                    allow_other_model)
    texts, _ = _run(lm, prompt, chosen, settings, image, None)
    return texts[0][0]


class _RowStreamer(BaseStreamer):
    """Collects the new token of every row at each step and hands the texts so far to a queue."""

    def __init__(self, lm: LoadedModel, rows: int, stop: tuple[str, ...] = ()):
        self.lm = lm
        self.stop = stop
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.queue: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        tokens = value.view(len(self.ids), -1)[:, -1].tolist()
        for row, tok in zip(self.ids, tokens):
            row.append(int(tok))
        texts = [cut_at_stop(self.lm.tokenizer.decode(r, skip_special_tokens=True), self.stop)[0] for r in self.ids]
        self.queue.put(tuple(texts))

    def end(self) -> None:
        self.queue.put(None)


def stream_pair(lm: LoadedModel, prompt: str, steering: SteeringLike = None, layer: Any = None,
                strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                normalize: bool = True, prompt_format: str | None = None,
                allow_other_model: bool = False) -> Iterator[tuple[str, str]]:
    """Yield (unsteered, steered) texts so far, token by token. Closing the iterator early stops generation; the
    hook comes off on every path.

    Args:
        lm, prompt, steering, layer, strength, settings, image, normalize, prompt_format, allow_other_model: as in
            `generate_pair`.

    Returns:
        An iterator of (unsteered text, steered text) so far, each cut before a stop sequence of `settings.stop`.

    Example:
        >>> for unsteered, steered in grains.stream_pair(lm, "The weather today", vector):
        ...     print(steered[-20:])
    """
    lm, chosen, settings = _prepare(lm, steering, layer, strength, settings, normalize, prompt_format,
                                    allow_other_model)
    streamer = _RowStreamer(lm, 2, settings.stop)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with lm.lock:
                inputs, _, prompt_len = _batch_inputs(lm, prompt, image, 2)
                with sampling_turn(settings.do_sample), _steering_context(lm, chosen, [False, True]), \
                        torch.no_grad():
                    torch.manual_seed(settings.seed)
                    lm.model.generate(**inputs, **_generate_kwargs(lm, settings), streamer=streamer,
                                      **_stopping(lm, settings, prompt_len, [StopWhen(stop.is_set)]))
        except BaseException as exc:  # handed to the consumer below
            failure.append(exc)
            streamer.queue.put(None)

    # a copy of this context: the worker stays in the caller's lane (grains.lanes)
    worker = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    worker.start()
    try:
        while True:
            item = streamer.queue.get()
            if item is None:
                break
            yield item
    finally:
        stop.set()
        worker.join()
    if failure:
        raise failure[0]
