"""The norm-preserving steering rule written out per token, to check the library against it.

The step-by-step IG reference is benchmarks.reference.reference_attribute (one implementation, shared with
`grains bench`)."""

from __future__ import annotations

import torch


def reference_steer(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h' = h + v, then each token rescaled to its original norm, written token by token."""
    out = torch.empty_like(h)
    for b in range(h.shape[0]):
        for t in range(h.shape[1]):
            moved = h[b, t] + v
            out[b, t] = moved * (h[b, t].norm() / moved.norm())
    return out
