"""Responses that share a prompt, packed after one copy of it: the prompt runs once for chosen and rejected (or for
every answer of a TruthfulQA question).

One packed row is [left padding, prompt, response 1, response 2, ...]. Its 4-D attention mask lets the prompt attend
causally to itself and each response to the prompt and causally to itself only, never to another response; each
response's position ids continue from the prompt's end. So every response sees exactly what it sees alone after the
prompt, and its log-probability is the same up to float rounding (tested to 1e-5 in fp32). Token i of a response is
predicted by the logits at the prompt's last position (i = 0) or at its own previous token; `logits_to_keep` covers
the prompt's last position and every response column.

A custom 4-D mask replaces the model's own masks for every layer, so packing is used only with the eager or SDPA
attention and only where no sliding-window layer could see a shorter window than the packed row (`packable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def packable(config: Any, longest: int) -> bool:
    """Whether a model may take packed rows of up to `longest` tokens.

    Args:
        config: the model's config.
        longest: the longest packed row (prompt + all its responses).

    Returns:
        True with eager or SDPA attention and no sliding window shorter than `longest`.
    """
    if getattr(config, "_attn_implementation", None) not in ("eager", "sdpa"):
        return False
    sliding = any("sliding" in str(t) for t in (getattr(config, "layer_types", None) or []))
    window = getattr(config, "sliding_window", None)
    if (sliding or getattr(config, "use_sliding_window", False)) and window is not None and longest > window:
        return False
    return True


@dataclass
class PackedBatch:
    """One forward pass of packed rows.

    Args:
        ids: token ids [B, T].
        positions: position ids [B, T].
        real: which columns hold real tokens [B, T] (bool).
        mask: the additive 4-D attention mask [B, 1, T, T].
        keep: `logits_to_keep` (the prompts' last column and every response column).
        spans: per packed row, each response's (start column within the kept logits, length).
    """

    ids: torch.Tensor
    positions: torch.Tensor
    real: torch.Tensor
    mask: torch.Tensor
    keep: int
    spans: list[list[tuple[int, int]]]


def pack(prompts: Sequence[list[int]], responses: Sequence[Sequence[list[int]]], pad_id: int,
         dtype: torch.dtype = torch.float32) -> PackedBatch:
    """Packed rows: each prompt once, then its responses, every prompt ending in the same column.

    Args:
        prompts: one prompt per packed row.
        responses: per packed row, the responses that share its prompt.
        pad_id: the padding token.
        dtype: the mask's dtype (the model's).

    Returns:
        The PackedBatch.
    """
    prompt_width = max(len(p) for p in prompts)
    response_width = max(sum(len(r) for r in group) for group in responses)
    width = prompt_width + response_width
    rows = len(prompts)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    segment = torch.full((rows, width), -1, dtype=torch.long)  # -1 padding, 0 prompt, j + 1 response j
    spans: list[list[tuple[int, int]]] = []
    for b, (prompt, group) in enumerate(zip(prompts, responses)):
        start = prompt_width - len(prompt)
        ids[b, start:prompt_width] = torch.tensor(prompt, dtype=torch.long)
        positions[b, start:prompt_width] = torch.arange(len(prompt))
        segment[b, start:prompt_width] = 0
        column, row_spans = prompt_width, []
        for j, response in enumerate(group):
            end = column + len(response)
            ids[b, column:end] = torch.tensor(response, dtype=torch.long)
            positions[b, column:end] = torch.arange(len(prompt), len(prompt) + len(response))
            segment[b, column:end] = j + 1
            row_spans.append((column - prompt_width + 1, len(response)))
            column = end
        spans.append(row_spans)
    query, key = segment.unsqueeze(2), segment.unsqueeze(1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = causal & (key != -1) & ((key == 0) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool)  # a padding column attends to itself: no row is fully masked
    mask = torch.zeros((rows, 1, width, width), dtype=dtype)
    mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    return PackedBatch(ids=ids, positions=positions, real=segment != -1, mask=mask, keep=response_width + 1,
                       spans=spans)
