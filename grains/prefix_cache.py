"""Reuse what steering does not change: the hidden states below the steered layer.

Steering at layer L adds to the output of decoder layer L; everything up to that output is the same with and without
the vector, at every strength, fold and vector. `CachedRows` holds a fixed set of (prompt ids, response ids) rows, runs
them unsteered once, keeps each row's hidden states at the output of the layers asked for, and afterwards scores
them under steering at layer L by running only the layers above L: the layers at or below L are swapped for
functions that hand back the kept states, and the steering hook at L (grains.steering, unchanged: norm rescaling
included) then acts on those states exactly as it acts on a full forward's. The unsteered scores are kept too.

Rows share forward passes aligned on the end of their prompts (grains.prompts.pad_aligned): each row's outputs are
its own, whatever else is in the pass, so a fold or a subset scores as the full set does (up to float rounding,
tested to 1e-5 in fp32 against the plain path); the output layer runs only at the positions a sum reads, each distinct
context once (grains.read_columns). Text models only: a VLM's merged image embeddings and position ids
are its own, so callers keep their plain path for it (`supports`).

Memory: rows x tokens x hidden size floats per kept layer (100 TruthfulQA pairs on a 896-wide model: ~30 MB a layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from grains.contrast_columns import contrast_columns, margin_parts, only_contrast_columns, plain_output_layer
from grains.local_hooks import local_forward_hook, local_forward_overrides
from grains.packing import pack, packable
from grains.prompts import pad_aligned
from grains.read_columns import only_read_columns, read_columns, read_sums

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

Row = tuple[list[int], list[int]]
LOGIT_FLOATS_PER_FORWARD = 48_000_000  # rows x kept positions x vocabulary: ~190 MB of fp32 logits at a time
# Rows x padded length per pass: bounds the attention scores (rows x heads x length^2). On the CPU smaller passes of
# long prompts are faster (a 24-pair cross-validation on long prompts: 39 s unbounded, 24 s at 8192, 18 s at 2048).
TOKENS_PER_FORWARD = 2048


class _Stop(Exception):
    """Raised by a capture hook above the last layer needed: the rest of the forward is not computed."""


def supports(lm: LoadedModel) -> bool:
    """Whether the hidden-state cache applies: text models (a VLM keeps the plain path).

    Args:
        lm: the model.

    Returns:
        True for a text model.
    """
    return not lm.adapter.is_vlm


def chunks(order: Sequence[int], rows: Sequence[Row], vocab: int) -> Iterator[list[int]]:
    """Consecutive row indices of `order`, as many per pass as keep the logits (positions read x vocabulary: each
    response token's position, or the prompt's end for a row without one, as grains.read_columns hands them to the
    output layer) under LOGIT_FLOATS_PER_FORWARD and the padded tokens under TOKENS_PER_FORWARD.

    Args:
        order: row indices, in the order they should share passes (sorted by length pays).
        rows: all rows.
        vocab: the output vocabulary size.

    Returns:
        Lists of row indices, one per forward pass (a single row may exceed a bound: it gets a pass of its own).
    """
    chunk: list[int] = []
    widest, longest, read = 0, 0, 0
    for i in order:
        prompt, response = rows[i]
        wider, longer, more = max(widest, len(response) + 1), max(longest, len(prompt)), read + max(len(response), 1)
        if chunk and (more * vocab > LOGIT_FLOATS_PER_FORWARD
                      or (len(chunk) + 1) * (longer + wider) > TOKENS_PER_FORWARD):
            yield chunk
            chunk, wider, longer, more = [], len(response) + 1, len(prompt), max(len(response), 1)
        chunk.append(i)
        widest, longest, read = wider, longer, more
    if chunk:
        yield chunk


@contextmanager
def start_at_layer(lm: LoadedModel, layer: int, hidden: torch.Tensor) -> Iterator[None]:
    """Inside, a forward of `lm` skips decoder layers 0..`layer`: they hand back `hidden` as layer `layer`'s output.

    Forward hooks on layer `layer` (a steering hook) still run on it, as on a full forward's output.

    Args:
        lm: a text model.
        layer: the last decoder layer skipped.
        hidden: [rows, length, hidden size], the output of `layer` for the batch about to run.

    Returns:
        A context manager; the layers' own forwards come back on every path.
    """
    layers = lm.adapter.layers

    def skip(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states

    def kept(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden

    # only this context's forwards skip (grains.local_hooks): another job on the same model runs every layer
    with local_forward_overrides([(layers[index], kept if index == layer else skip) for index in range(layer + 1)]):
        yield


class CachedRows:
    """Fixed (prompt ids, response ids) rows, scored unsteered once and under steering from kept hidden states.

    Consecutive rows with the same prompt (chosen and rejected, a question's answers) are packed after one copy of
    it (grains.packing) where the model allows; the kept hidden states are then per packed row.

    Args:
        lm: a text model (see `supports`).
        rows: (prompt ids, response ids) per row; an empty response reads the next-token distribution at the
            prompt's end instead (`last_logprobs`).
        layers: layers whose outputs are kept at the first unsteered pass (others are kept when first needed).
        enabled: False scores every call with full forwards of one row per prompt (the plain path, for comparison).

    Example:
        >>> cache = CachedRows(lm, rows, layers=[6, 9])
        >>> base = cache.logprob_sums()                       # one full pass, layers 6 and 9 kept
        >>> steered = cache.logprob_sums(steering)           # only the layers above the steered one run
    """

    def __init__(self, lm: LoadedModel, rows: Sequence[Row], layers: Sequence[int] = (), enabled: bool = True):
        self.lm = lm
        self.rows = [(list(p), list(r)) for p, r in rows]
        self.enabled = enabled and supports(lm)
        groups: list[list[int]] = []
        for i, (prompt, _) in enumerate(self.rows):
            if groups and self.rows[groups[-1][0]][0] == prompt:
                groups[-1].append(i)
            else:
                groups.append([i])
        longest = max((len(self.rows[g[0]][0]) + sum(len(self.rows[i][1]) for i in g) for g in groups), default=0)
        self.packed = (self.enabled and any(len(g) > 1 for g in groups) and all(r for _, r in self.rows)
                       and packable(lm.model.config, longest))
        self.groups = groups if self.packed else [[i] for i in range(len(self.rows))]
        # margins from the contexts one side reads (grains.contrast_columns): packed (chosen, rejected) pairs
        self.contrast = (self.packed and all(g[0] % 2 == 0 and len(g) % 2 == 0 for g in groups)
                         and plain_output_layer(lm))
        self.group_of = {i: g for g, members in enumerate(self.groups) for i in members}
        self.hidden: dict[int, list[torch.Tensor | None]] = {}  # per layer, per group: its real tokens' states
        self.wanted = sorted(set(layers)) if self.enabled else []
        self._sums: list[float] | None = None
        self._last: torch.Tensor | None = None
        self._pending: dict[int, list[torch.Tensor | None]] = {}  # layers being kept during a pass
        self.vocab = int(lm.model.get_output_embeddings().weight.shape[0])
        self.units = [(self.rows[g[0]][0], [t for i in g for t in self.rows[i][1]]) for g in self.groups]
        self.order = sorted(range(len(self.groups)), key=lambda g: (len(self.units[g][0]), len(self.units[g][1])))
        self.full_passes = 0  # forward passes over the whole network (for tests and benchmarks)
        self.partial_passes = 0  # passes that started above a kept layer

    # ------------------------------------------------------------------ public

    def logprob_sums(self, steering: Steering | None = None, indices: Sequence[int] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     progress: Callable[[float], None] | None = None) -> list[float]:
        """Sum of log P(response | prompt) per row (of `indices`, default every row), unsteered or steered.

        Args:
            steering: the setting (None or strength 0: the kept unsteered scores).
            indices: which rows.
            should_stop: polled between passes; True raises grains.errors.Cancelled.
            progress: called with the fraction of rows done after each pass.

        Returns:
            One sum per row asked for, in order.
        """
        chosen = list(range(len(self.rows))) if indices is None else list(indices)
        if steering is None or steering.is_identity:
            if self._sums is None:
                self._sums = self._run(list(range(len(self.rows))), None, self._read_sums, should_stop, progress)
            elif progress:
                progress(1.0)
            return [self._sums[i] for i in chosen]
        return self._run(chosen, steering, self._read_sums, should_stop, progress)

    def margins(self, steering: Steering | None = None, pairs: Sequence[int] | None = None,
                should_stop: Callable[[], bool] | None = None,
                progress: Callable[[float], None] | None = None) -> list[float]:
        """log P(chosen | prompt) - log P(rejected | prompt) per pair, rows 2j and 2j + 1 being pair j's chosen and
        rejected (as grains.scoring.pair_rows lays them out).

        Steered, packed pairs read the output layer only where the two sides' contexts differ
        (grains.contrast_columns): the same margins as the difference of `logprob_sums`, for less arithmetic.

        Args:
            steering: the setting (None or strength 0: from the kept unsteered sums).
            pairs: which pairs (default every pair).
            should_stop: polled between passes; True raises grains.errors.Cancelled.
            progress: called with the fraction of rows done after each pass.

        Returns:
            One margin per pair asked for, in order.
        """
        chosen = list(range(len(self.rows) // 2)) if pairs is None else list(pairs)
        rows = [r for j in chosen for r in (2 * j, 2 * j + 1)]
        if steering is None or steering.is_identity or not self.contrast:
            values = self.logprob_sums(steering, rows, should_stop, progress)
        else:
            values = self._run(rows, steering, self._read_margins, should_stop, progress)
        return [values[2 * k] - values[2 * k + 1] for k in range(len(chosen))]

    def last_logprobs(self, steering: Steering | None = None, indices: Sequence[int] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """log P(next token | prompt) at each row's prompt end, [rows, vocabulary] float32 on the CPU.

        Args:
            steering: the setting (None or strength 0: the kept unsteered distributions).
            indices: which rows.
            should_stop: polled between passes.

        Returns:
            The log-probabilities, one row per index.
        """
        if any(response for _, response in self.rows):
            raise ValueError("last_logprobs reads prompts alone: give rows with empty responses.")
        chosen = list(range(len(self.rows))) if indices is None else list(indices)
        if steering is None or steering.is_identity:
            if self._last is None:
                self._last = torch.stack(self._run(list(range(len(self.rows))), None, _last_rows, should_stop))
            return self._last[chosen]
        return torch.stack(self._run(chosen, steering, _last_rows, should_stop))

    def last_hidden(self, layer: int, row: int) -> torch.Tensor:
        """The kept output of `layer` at the last token of row `row` (prompt + its response).

        Args:
            layer: a kept layer (scored unsteered first).
            row: the row.

        Returns:
            The hidden state [hidden size].
        """
        group = self.groups[self.group_of[row]]
        kept = self.hidden[layer][self.group_of[row]]
        assert kept is not None
        end = len(self.rows[group[0]][0])
        for i in group:
            end += len(self.rows[i][1])
            if i == row:
                return kept[end - 1]
        raise KeyError(row)

    # ------------------------------------------------------------------ passes

    def _run(self, indices: list[int], steering: Steering | None, read: Callable[..., list[list[Any]]],
             should_stop: Callable[[], bool] | None,
             progress: Callable[[float], None] | None = None) -> list[Any]:
        from grains.errors import Cancelled

        start = min(steering.layers) if self.enabled and steering is not None else None
        if start is not None and start not in self.hidden:
            self.wanted = sorted(set(self.wanted) | {start})
            self._capture(start, should_stop)
        needed = {self.group_of[i] for i in indices}
        order = [g for g in self.order if g in needed]
        values: dict[int, Any] = {}
        done = 0
        context = steering.apply(self.lm) if steering is not None else nullcontext()
        with torch.no_grad(), context:
            for chunk in chunks(order, self.units, self.vocab):
                if should_stop and should_stop():
                    raise Cancelled("Cancelled while scoring.")
                capture = [la for la in self.wanted if la not in self.hidden] if steering is None else []
                for g, group_values in zip(chunk, self._pass(chunk, read, start, capture)):
                    values.update(zip(self.groups[g], group_values))
                done += len(chunk)
                if progress:
                    progress(done / max(1, len(order)))
        if steering is None:
            for layer in self.wanted:
                self.hidden.setdefault(layer, self._pending.pop(layer, [None] * len(self.groups)))
        return [values[i] for i in indices]

    def _capture(self, layer: int, should_stop: Callable[[], bool] | None) -> None:
        """Keep every group's output of `layer`, computing no layer above it."""
        from grains.errors import Cancelled

        with torch.no_grad():
            for chunk in chunks(self.order, self.units, self.vocab):
                if should_stop and should_stop():
                    raise Cancelled("Cancelled while scoring.")
                self._pass(chunk, None, None, [layer], stop_after=layer)
        self.hidden[layer] = self._pending.pop(layer)

    def _batch(self, chunk: list[int], contrast: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """ids, attention mask, position ids, real-token columns and the layout the reader needs."""
        lm = self.lm
        pad = lm.tokenizer.pad_token_id or 0
        if self.packed:
            responses = [[self.rows[i][1] for i in self.groups[g]] for g in chunk]
            batch = pack([self.units[g][0] for g in chunk], responses, pad, lm.model.dtype)
            columns = (contrast_columns if contrast else read_columns)(responses, batch.spans)
            return batch.ids, batch.mask, batch.positions, batch.real, (responses, columns)
        prompts = [self.rows[self.groups[g][0]][0] for g in chunk]
        responses = [self.rows[self.groups[g][0]][1] for g in chunk]
        ids, mask, positions = pad_aligned(prompts, responses, pad)
        alone = [[r] for r in responses]  # one response per row
        return ids, mask, positions, mask.bool(), (alone, read_columns(alone))

    def _read_sums(self, logits: torch.Tensor, layout: Any) -> list[list[float]]:
        return read_sums(logits, layout[1])

    def _read_margins(self, logits: torch.Tensor, layout: Any) -> list[list[float]]:
        return margin_parts(logits, layout[1])

    def _pass(self, chunk: list[int], read: Callable[..., list[list[Any]]] | None,
              start: int | None, capture: list[int], stop_after: int | None = None) -> list[list[Any]]:
        lm = self.lm
        contrast = read == self._read_margins
        ids, mask, positions, real, layout = self._batch(chunk, contrast)
        keep = max(sum(len(r) for r in group) for group in layout[0]) + 1
        device = lm.adapter.input_device
        handles = []
        for layer in capture:
            store = self._pending.setdefault(layer, [None] * len(self.groups))

            def hook(module: Any, args: Any, output: Any, store: list = store, layer: int = layer) -> None:
                hidden = output if isinstance(output, torch.Tensor) else output[0]
                for row, g in enumerate(chunk):
                    store[g] = hidden[row][real[row].to(hidden.device)].detach().clone()
                if stop_after is not None and layer == stop_after:
                    raise _Stop

            handles.append(local_forward_hook(lm.adapter.layers[layer], hook))  # this context's passes only
        skip = nullcontext()
        if start is not None:
            kept = self.hidden[start]
            first = kept[chunk[0]]
            assert first is not None
            hidden = torch.zeros((len(chunk), ids.shape[1], first.shape[-1]), dtype=first.dtype, device=first.device)
            for row, g in enumerate(chunk):
                hidden[row][real[row].to(first.device)] = kept[g]  # type: ignore[assignment]
            skip = start_at_layer(lm, start, hidden)
        # the output layer only at the positions a sum reads, each distinct context once (grains.read_columns)
        head = (only_contrast_columns(lm, layout[1]) if contrast else
                only_read_columns(lm, layout[1]) if read == self._read_sums and layout[1].total else nullcontext())
        try:
            with skip, head:
                out = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                               position_ids=positions.to(device), use_cache=False, logits_to_keep=keep)
        except _Stop:
            return []
        finally:
            for handle in handles:
                handle.remove()
        if start is None:
            self.full_passes += 1
        else:
            self.partial_passes += 1
        assert read is not None
        return read(out.logits, layout)


def _last_rows(logits: torch.Tensor, layout: Any) -> list[list[torch.Tensor]]:
    """log-softmax of the last prompt position per row (rows without a response, never packed)."""
    return [[row] for row in torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()]
