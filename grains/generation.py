"""Unsteered and steered continuations of one prompt, side by side, in one batched generate call."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from grains.errors import InputError
from grains.memory import oom_guard
from grains.steering import check_layers, check_strength, steer
from grains.vectors import SteeringVector

MAX_NEW_TOKENS = 1024


@dataclass
class GenerationSettings:
    """Decoding settings shared by both rows. Greedy unless `do_sample`."""

    max_new_tokens: int = 40
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def check(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise InputError("max_new_tokens must be a whole number.")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise InputError(f"max_new_tokens must be from 1 to {MAX_NEW_TOKENS}.")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise InputError("The temperature must be a positive number.")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise InputError("top_p must be in (0, 1].")


@dataclass
class PairedGeneration:
    unsteered: str
    steered: str
    prompt_text: str


def _generate_kwargs(lm: Any, settings: GenerationSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                              "pad_token_id": lm.tokenizer.pad_token_id}
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:  # silence generation_config defaults that only apply to sampling
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def _batch_inputs(lm: Any, prompt: str, image: Any, batch: int) -> tuple[dict[str, Any], str, int]:
    enc = lm.encode_prompt(prompt, image=image)
    ids = torch.tensor([enc.ids] * batch, dtype=torch.long)
    inputs = lm.adapter.generation_inputs(ids, lm.adapter.expand_extras(enc.extras, batch) if enc.extras else None)
    inputs.setdefault("attention_mask", torch.ones_like(ids).to(ids.device if "input_ids" not in inputs
                                                                 else inputs["input_ids"].device))
    return inputs, enc.text, len(enc.ids)


def _steering_context(lm: Any, vector: SteeringVector | None, layer: Any, strength: float | None,
                      rows: list[bool] | None, normalize: bool):
    if vector is None:
        return nullcontext()
    return steer(lm, vector, layer, strength, rows=rows, normalize=normalize)


def _check_request(lm: Any, vector: SteeringVector | None, layer: Any, strength: float | None) -> None:
    if vector is not None:
        check_layers(layer, lm.num_layers, vector)
        check_strength(vector.default_strength if strength is None else strength)


def _decode(lm: Any, rows: torch.Tensor, prompt_len: int) -> list[str]:
    return [lm.tokenizer.decode(r[prompt_len:], skip_special_tokens=True) for r in rows]


def _run(lm: Any, prompt: str, vector: SteeringVector | None, layer: Any, strength: float | None,
         settings: GenerationSettings | None, image: Any, normalize: bool,
         steer_rows: list[bool] | None) -> tuple[list[str], str]:
    """One generate call over len(steer_rows) (or 1) copies of the prompt; returns the texts and the prompt text."""
    settings = settings or GenerationSettings()
    settings.check()
    _check_request(lm, vector, layer, strength)
    with lm.lock, oom_guard("generation", "use fewer new tokens."):
        inputs, text, prompt_len = _batch_inputs(lm, prompt, image, len(steer_rows) if steer_rows else 1)
        torch.manual_seed(settings.seed)
        with _steering_context(lm, vector, layer, strength, steer_rows, normalize), torch.no_grad():
            out = lm.model.generate(**inputs, **_generate_kwargs(lm, settings))
    return _decode(lm, out, prompt_len), text


def generate_pair(lm: Any, prompt: str, vector: SteeringVector | None = None, layer: Any = None,
                  strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                  normalize: bool = True) -> PairedGeneration:
    """Row 0 unsteered, row 1 steered, in one generate call with the same seed. Without a vector both rows are
    unsteered; at strength 0 the steered text equals the unsteered text exactly."""
    (unsteered, steered), text = _run(lm, prompt, vector, layer, strength, settings, image, normalize, [False, True])
    return PairedGeneration(unsteered=unsteered, steered=steered, prompt_text=text)


def generate_one(lm: Any, prompt: str, vector: SteeringVector | None = None, layer: Any = None,
                 strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                 normalize: bool = True) -> str:
    """A single continuation, steered when a vector is given."""
    texts, _ = _run(lm, prompt, vector, layer, strength, settings, image, normalize, None)
    return texts[0]


class _RowStreamer(BaseStreamer):
    """Collects the new token of every row at each step and hands the texts so far to a queue."""

    def __init__(self, lm: Any, rows: int):
        self.lm = lm
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
        texts = [self.lm.tokenizer.decode(r, skip_special_tokens=True) for r in self.ids]
        self.queue.put(tuple(texts))

    def end(self) -> None:
        self.queue.put(None)


class _StopFlag(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_pair(lm: Any, prompt: str, vector: SteeringVector | None = None, layer: Any = None,
                strength: float | None = None, settings: GenerationSettings | None = None, image: Any = None,
                normalize: bool = True) -> Iterator[tuple[str, str]]:
    """Yield (unsteered, steered) texts so far, token by token. Closing the iterator early stops generation;
    the hook comes off on every path."""
    settings = settings or GenerationSettings()
    settings.check()
    _check_request(lm, vector, layer, strength)
    streamer = _RowStreamer(lm, 2)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with lm.lock:
                inputs, _, _ = _batch_inputs(lm, prompt, image, 2)
                torch.manual_seed(settings.seed)
                with _steering_context(lm, vector, layer, strength, [False, True], normalize), torch.no_grad():
                    lm.model.generate(**inputs, **_generate_kwargs(lm, settings), streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([_StopFlag(stop)]))
        except BaseException as exc:  # handed to the consumer below
            failure.append(exc)
            streamer.queue.put(None)

    worker = threading.Thread(target=run, daemon=True)
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
