"""The output layer on just the positions a score reads.

A response's log-probability reads the logits at the position before each of its tokens. In a batch of rows aligned
on their prompts' ends (grains.prompts.pad_aligned) or packed after one copy of their prompt (grains.packing),
`logits_to_keep` still leaves columns that nothing reads: the padding after shorter responses, and in a packed row
the last token of every response. With a large vocabulary the output layer is most of a pass's arithmetic (Gemma-3's
262k x 640 head has more weights than its decoder layers), so `only_read_columns` hands the output layer only the
columns read, flattened into one row, and `read_sums` sums each response's log-probabilities from that row. Each read
position's logits are those of the full layout (the same product, up to float rounding).

    columns = read_columns(responses, spans)
    with only_read_columns(lm, columns):
        logits = lm.model(..., logits_to_keep=keep).logits   # [1, columns read, vocabulary]
    sums = read_sums(logits, columns)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.local_hooks import local_forward_pre_hook

if TYPE_CHECKING:
    from grains.models import LoadedModel


@dataclass
class ReadColumns:
    """The kept-logit positions a batch's responses read, in reading order.

    Args:
        rows: batch row of each position read [N].
        columns: column of each position within the kept logits [N] (column 0: the prompt's last position).
        targets: the token each position predicts [N].
        lengths: per batch row, each response's token count (the positions are read response after response).
    """

    rows: torch.Tensor
    columns: torch.Tensor
    targets: torch.Tensor
    lengths: list[list[int]]

    @property
    def total(self) -> int:
        """How many positions are read."""
        return int(self.rows.numel())


def read_columns(responses: Sequence[Sequence[list[int]]],
                 spans: Sequence[Sequence[tuple[int, int]]] | None = None) -> ReadColumns:
    """Which kept-logit columns predict each response token.

    Args:
        responses: per batch row, its responses (one each unless packed).
        spans: per packed row, each response's (start column, length) as `grains.packing.pack` lays them out; None
            for rows aligned on their prompts' ends, where column j predicts response token j.

    Returns:
        The ReadColumns.
    """
    rows: list[int] = []
    columns: list[int] = []
    targets: list[int] = []
    for b, group in enumerate(responses):
        starts = [start for start, _ in spans[b]] if spans is not None else [None] * len(group)
        for response, start in zip(group, starts):
            for i, token in enumerate(response):
                rows.append(b)
                # packed: token 0 of every response is predicted at the prompt's last position
                columns.append(i if start is None else (0 if i == 0 else start + i - 1))
                targets.append(token)
    return ReadColumns(rows=torch.tensor(rows, dtype=torch.long), columns=torch.tensor(columns, dtype=torch.long),
                       targets=torch.tensor(targets, dtype=torch.long),
                       lengths=[[len(r) for r in group] for group in responses])


@contextmanager
def only_read_columns(lm: LoadedModel, columns: ReadColumns) -> Iterator[None]:
    """Inside, this context's forwards of `lm` give logits [1, columns read, vocabulary] instead of [B, kept, V].

    Args:
        lm: the model (its output embeddings take the hook).
        columns: the positions to keep.

    Returns:
        A context manager; the hook comes off on every path.
    """
    head = lm.model.get_output_embeddings()

    def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0]
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
        logits: [1, N, vocabulary].
        columns: the ReadColumns they were read at.

    Returns:
        Per batch row, one sum per response.
    """
    if not columns.total:  # nothing to read: every response empty
        return [[0.0] * len(group) for group in columns.lengths]
    flat = logits[0].float()
    picked = flat.gather(-1, columns.targets.to(flat.device).unsqueeze(-1)).squeeze(-1)
    logprobs = (picked - torch.logsumexp(flat, dim=-1)).double().cpu()
    out, at = [], 0
    for group in columns.lengths:
        sums = []
        for length in group:
            sums.append(float(logprobs[at:at + length].sum()))
            at += length
        out.append(sums)
    return out
