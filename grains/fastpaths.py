"""CPU fast paths for the vocabulary-sized output head.

1. Flattened input. With `logits_to_keep`, transformers feeds the head a slice of the hidden states; a
   non-contiguous 3-D input that requires grad makes `torch.matmul` skip folding it to 2-D and run a batched
   product against the weight expanded per row, one thin GEMM per sequence. During IG on Gemma-3-270M that was
   half of all the time (9.8 s of 19.4 s, 20 points, 1 thread). Flattening to a contiguous [rows, hidden] first
   makes it one GEMM.
2. Thin batches. CPU BLAS handles `x @ W.T` badly when x has a few rows: 2 rows against Gemma's 262k x 640 head
   took 110 ms (twice one row), the same product as `(W @ x.T).T` 37 ms. Decoding one or two rows per step (the
   side-by-side pair) is exactly that case, so up to `THIN_ROWS` rows take the transposed product, when no gradient
   is asked for: its backward, `W.T @ grad` against the transposed weight, is the slow layout again (4.6 s for 4
   rows of Gemma's head where the plain product's backward takes 0.3 s).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

THIN_ROWS = 8


def _head_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // max(1, x.shape[-1])
    if x.device.type != "cpu" or rows == 0:
        return nn.functional.linear(x, self.weight, self.bias)
    flat = x.reshape(rows, x.shape[-1])  # a copy when x is a slice: one GEMM instead of one per sequence
    if rows > THIN_ROWS or (flat.requires_grad and torch.is_grad_enabled()):
        out = nn.functional.linear(flat, self.weight, self.bias)
    else:
        out = (self.weight @ flat.T).T
        if self.bias is not None:
            out = out + self.bias
    return out.reshape(*x.shape[:-1], self.weight.shape[0])


def speed_up_output_head(model: Any, min_outputs: int = 32_000) -> bool:
    """Give a CPU model's output head (a vocabulary-sized nn.Linear) the fast paths above. True if done."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear) or head.weight.shape[0] < min_outputs or head.weight.device.type != "cpu":
        return False
    head.forward = types.MethodType(_head_forward, head)
    return True
