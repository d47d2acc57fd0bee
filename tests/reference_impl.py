"""A plain, step-by-step transcription of the GrAInS method, used to check the library against it.

Deliberately simple: one interpolation point at a time, full forward passes with input_ids-free embeddings,
full logits, `.backward()`; the norm-preserving steering rule written out per token.
"""

from __future__ import annotations

import numpy as np
import torch


def reference_ig(model, plus_ids, minus_ids, prompt_len, plus_base, minus_base, steps, embed, nodes=None):
    """Contrastive IG, one point at a time, for f = log P(y+|x) - log P(y-|x) (whole response): Gauss-Legendre
    points on [0, 1], or the given `nodes` = (alphas, weights) of any other rule."""
    if nodes is None:
        x, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (x + 1) / 2, w / 2
    else:
        alphas, weights = nodes
    x_plus = embed(torch.tensor([plus_ids])).detach()
    x_minus = embed(torch.tensor([minus_ids])).detach()
    total_plus = torch.zeros_like(x_plus)
    total_minus = torch.zeros_like(x_minus)

    def logprob(emb, ids):
        logits = model(inputs_embeds=emb).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        return sum(lp[t - 1, ids[t]] for t in range(prompt_len, len(ids)))

    for alpha, weight in zip(alphas, weights):
        ep = (plus_base + float(alpha) * (x_plus - plus_base)).requires_grad_(True)
        em = (minus_base + float(alpha) * (x_minus - minus_base)).requires_grad_(True)
        f = logprob(ep, plus_ids) - logprob(em, minus_ids)
        f.backward()
        total_plus += float(weight) * ep.grad
        total_minus += float(weight) * em.grad
    phi_plus = ((x_plus - plus_base) * total_plus).sum(-1)[0]
    phi_minus = ((x_minus - minus_base) * total_minus).sum(-1)[0]
    return phi_plus, phi_minus


def reference_steer(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h' = h + v, then each token rescaled to its original norm, written token by token."""
    out = torch.empty_like(h)
    for b in range(h.shape[0]):
        for t in range(h.shape[1]):
            moved = h[b, t] + v
            out[b, t] = moved * (h[b, t].norm() / moved.norm())
    return out
