"""The output layer on just the positions a score reads, each distinct one once.

A response's log-probability reads the logits at the position before each of its tokens. In a batch of rows aligned
on their prompts' ends (grains.prompts.pad_aligned) or packed after one copy of their prompt (grains.packing),
`logits_to_keep` still leaves columns that nothing reads: the padding after shorter responses, and in a packed row
the last token of every response. And responses that share a prompt read the same logits wherever their contexts
agree: every first token is read at the prompt's end, and " The cat" and " The dog" both read " The"'s logits. With a
large vocabulary the output layer is most of a pass's arithmetic (Gemma-3's 262k x 640 head has more weights than its
decoder layers), so `only_read_columns` hands the output layer one column per distinct context read, flattened into
one row, and `read_sums` sums each response's log-probabilities from it. Each position's logits are those of the full
layout (the same product, up to float rounding).

    columns = read_columns(responses, spans)
    with only_read_columns(lm, columns):
        logits = lm.model(..., logits_to_keep=keep).logits   # [1, distinct contexts read, vocabulary]
    sums = read_sums(logits, columns)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.local_hooks import local_forward_pre_hook

if TYPE_CHECKING:
    from grains.models import LoadedModel


@dataclass
class ReadColumns:
    """The kept-logit positions a batch's responses read: each distinct context once, and which one each token reads.

    Args:
        rows: batch row of each distinct position [U].
        columns: its column within the kept logits [U] (column 0: the prompt's last position).
        reads: for each response token, in reading order, the distinct position whose logits predict it [N].
        targets: the token each of them is [N].
        lengths: per batch row, each response's token count (the tokens are read response after response).
    """

    rows: torch.Tensor
    columns: torch.Tensor
    reads: torch.Tensor
    targets: torch.Tensor
    lengths: list[list[int]]

    @property
    def total(self) -> int:
        """How many distinct positions go through the output layer."""
        return int(self.rows.numel())


def read_columns(responses: Sequence[Sequence[list[int]]],
                 spans: Sequence[Sequence[tuple[int, int]]] | None = None) -> ReadColumns:
    """Which kept-logit columns predict each response token, a context shared by responses of one row read once.

    Args:
        responses: per batch row, its responses (one each unless packed).
        spans: per packed row, each response's (start column, length) as `grains.packing.pack` lays them out; None
            for rows aligned on their prompts' ends, where column j predicts response token j.

    Returns:
        The ReadColumns.
    """
    rows: list[int] = []
    columns: list[int] = []
    reads: list[int] = []
    targets: list[int] = []
    for b, group in enumerate(responses):
        starts = [start for start, _ in spans[b]] if spans is not None else [None] * len(group)
        distinct: dict[tuple[int, ...], int] = {}  # the response tokens before a position -> its distinct index
        for response, start in zip(group, starts):
            for i, token in enumerate(response):
                context = tuple(response[:i])
                if context not in distinct:  # after the same prompt, the same context gives the same logits
                    distinct[context] = len(rows)
                    rows.append(b)
                    columns.append(i if start is None else packed_column(start, i))
                reads.append(distinct[context])
                targets.append(token)
    return ReadColumns(rows=torch.tensor(rows, dtype=torch.long), columns=torch.tensor(columns, dtype=torch.long),
                       reads=torch.tensor(reads, dtype=torch.long), targets=torch.tensor(targets, dtype=torch.long),
                       lengths=[[len(r) for r in group] for group in responses])


def packed_column(start: int, i: int) -> int:
    """The kept-logit column that predicts token `i` of a packed response starting at column `start`: token 0 of
    every response is predicted at the prompt's last position (column 0), token i > 0 at the response's token i - 1.

    Args:
        start: the response's first column (grains.packing.pack's spans).
        i: the token's index within the response.

    Returns:
        The column.
    """
    return 0 if i == 0 else start + i - 1


@contextmanager
def only_read_columns(lm: LoadedModel, columns: Any,
                      before: Callable[[Any, torch.Tensor], None] | None = None) -> Iterator[None]:
    """Inside, this context's forwards of `lm` give logits [1, columns read, vocabulary] instead of [B, kept, V].

    Args:
        lm: the model (its output embeddings take the hook).
        columns: the positions to keep (`rows` and `columns` tensors: ReadColumns, or
            grains.contrast_columns.ContrastColumns).
        before: called with (the output layer, its whole input) before the positions are picked.

    Returns:
        A context manager; the hook comes off on every path.
    """
    head = lm.model.get_output_embeddings()

    def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
        if before is not None:
            before(module, hidden)
        picked = hidden[columns.rows.to(hidden.device), columns.columns.to(hidden.device)]
        return (picked.unsqueeze(0), *args[1:])

    handle = local_forward_pre_hook(head, gather)
    try:
        yield
    finally:
        handle.remove()


def read_sums(logits: torch.Tensor, columns: ReadColumns) -> list[list[float]]:
    """Sum of log P(response | prompt) for every response, from the logits of `only_read_columns`.

    Args:
        logits: [1, N, vocabulary] (overwritten when already float32).
        columns: the ReadColumns they were read at.

    Returns:
        Per batch row, one sum per response.
    """
    if not columns.total:  # nothing to read: every response empty
        return [[0.0] * len(group) for group in columns.lengths]
    logprobs = token_logprobs(logits, columns.reads, columns.targets)
    out, at = [], 0
    for group in columns.lengths:
        sums = []
        for length in group:
            sums.append(float(logprobs[at:at + length].sum()))
            at += length
        out.append(sums)
    return out


def token_logprobs(logits: torch.Tensor, reads: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log P(target) at each read position, from logits of the output layer at just the positions read.

    Args:
        logits: [1, positions, vocabulary] (overwritten when already float32).
        reads: for each token, the position whose logits predict it [N].
        targets: the tokens [N].

    Returns:
        [N] float64 on the CPU.
    """
    flat = logits[0].float()
    reads = reads.to(flat.device)
    picked = flat[reads, targets.to(flat.device)]
    # logsumexp in place (the logits are not needed after this): a vocabulary-wide temporary per row is what made
    # torch.logsumexp 2.8x slower here (300 x 262k: 0.32 s against 0.11 s, one thread, the same values)
    top = flat.amax(dim=-1, keepdim=True)
    log_total = flat.sub_(top).exp_().sum(dim=-1).log_() + top.squeeze(-1)
    return (picked - log_total[reads]).double().cpu()
