"""Target log-probabilities from logits without vocabulary-sized temporaries: log_softmax(logits)[target] per row,
with a one-pass backward (used by the contrastive IG objective)."""

from __future__ import annotations

from typing import Any

import torch

ROW_BLOCK = 8  # rows of logits per vocabulary-sized temporary


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least fp32 (bf16/fp16 logits are widened; fp64 stays fp64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class _TargetLogprob(torch.autograd.Function):
    """log_softmax(logits)[target] per row, with a backward that writes the [rows, vocab] gradient in one pass
    (softmax scaled, plus the target's share) instead of materialising log-softmax and zero-filled gathers.
    Rows go in blocks so the vocabulary-sized temporaries stay small and are reused."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        lse = torch.cat([torch.logsumexp(_wide(block), dim=-1) for block in logits.split(ROW_BLOCK)])
        ctx.save_for_backward(logits, lse, targets)
        return _wide(logits.gather(-1, targets.view(-1, 1)).squeeze(-1)) - lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, lse, targets = ctx.saved_tensors
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            block = (_wide(logits[rows]) - lse[rows].view(-1, 1)).exp_().mul_(-grad[rows].view(-1, 1))
            out[rows] = block.scatter_add_(-1, targets[rows].view(-1, 1), grad[rows].view(-1, 1).to(block.dtype))
        return out, None


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log P(targets[i]) under logits[i] ([rows, vocab] -> [rows]), differentiable with respect to the logits."""
    return _TargetLogprob.apply(logits, targets)
