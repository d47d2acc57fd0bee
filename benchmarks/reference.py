"""A faithful step-by-step contrastive IG loop, the way the GrAInS reference scripts compute it.

It is the yardstick `grains bench` measures the engine (grains.attribution) against, and the independent check that
the engine's batched IG is right: same inputs, same baseline, same interpolation points and weights, same target,
so the two must agree to float precision. What it does differently is what the reference scripts do:

- one interpolation point at a time (no batching of points), each sequence in its own forward pass;
- every weight requires grad, so each `.backward()` also computes and stores weight gradients;
- full logits at every position (no `logits_to_keep`), log-softmax over all of them;
- the model's own dtype (fp32 on the CPU), no chunking, no memory budget.

Not part of the engine (it lives outside the `grains` package): `grains bench` and the tests use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from grains.encoding import EncodedExample
from grains.quadrature import RULES
from grains.quadrature import integration_points as quadrature_points


@dataclass
class ReferenceResult:
    """Scores of every token of s+ and s- (same layout as AttributionResult.plus_scores/minus_scores)."""

    plus_scores: list[float]
    minus_scores: list[float]
    scores: list[float]
    f_input: float
    f_baseline: float
    delta: float
    seconds: float


def integration_points(steps: int, points: str = "gauss-legendre") -> tuple[list[float], list[float]]:
    """(alphas, weights) on [0, 1] of a named rule: Gauss-Legendre nodes, midpoints with equal weights, or the
    engine's graded rule (grains.quadrature), so the loop can be run on the engine's own nodes."""
    if points not in RULES:
        raise ValueError(f"unknown integration points {points!r}")
    return quadrature_points(steps, points)


def _sequence_logprob(model: torch.nn.Module, embeds: torch.Tensor, ids: list[int], prompt_len: int,
                      target: str) -> torch.Tensor:
    """log P(response | prompt) of one sequence [1, T, D] from the full logits (or of its last token only)."""
    logits = model(inputs_embeds=embeds, use_cache=False).logits  # [1, T, V]: every position
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    positions = range(len(ids) - 1, len(ids)) if target == "last" else range(prompt_len, len(ids))
    return sum(logprobs[0, t - 1, ids[t]] for t in positions)


def reference_attribute(lm, example: EncodedExample, steps: int = 20, target: str = "sequence",
                        baseline: str = "zero", points: str = "gauss-legendre",
                        nodes: tuple[list[float], list[float]] | None = None) -> ReferenceResult:
    """Contrastive IG of f = log P(chosen | prompt) - log P(rejected | prompt), one point and one backward at a time.

    Weights are switched to requires_grad=True for the duration (as a training-style script leaves them) and back
    to frozen afterwards, on every path.
    """
    model = lm.model
    prompt_len = example.prompt_len
    ids = {which: example.sequence_ids(which) for which in ("plus", "minus")}
    inputs, bases = {}, {}
    with torch.no_grad():
        for which in ("plus", "minus"):
            emb = lm.adapter.embed_ids(torch.tensor([ids[which]]), None).detach()
            if baseline == "pad":
                pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
                base = lm.adapter.embed_ids(torch.tensor([[pad_id]]), None).detach().expand_as(emb).clone()
            else:
                base = torch.zeros_like(emb)
            keep = example.keep_mask(which).to(emb.device)  # BOS and template specials stay real
            base[0, keep] = emb[0, keep]
            inputs[which], bases[which] = emb, base
    alphas, weights = nodes if nodes is not None else integration_points(steps, points)
    params = list(model.parameters())
    was_frozen = [not p.requires_grad for p in params]
    start = time.perf_counter()
    try:
        for p in params:
            p.requires_grad_(True)
        total = {which: torch.zeros_like(inputs[which], dtype=torch.float32) for which in ("plus", "minus")}
        for alpha, weight in zip(alphas, weights):
            model.zero_grad(set_to_none=True)
            scaled = {
                which: (bases[which] + alpha * (inputs[which] - bases[which])).detach().requires_grad_(True)
                for which in ("plus", "minus")
            }
            f = (_sequence_logprob(model, scaled["plus"], ids["plus"], prompt_len, target)
                 - _sequence_logprob(model, scaled["minus"], ids["minus"], prompt_len, target))
            f.backward()
            for which in ("plus", "minus"):
                total[which] += weight * scaled[which].grad.float()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            f_values = []
            for source in (inputs, bases):
                f_values.append(float(_sequence_logprob(model, source["plus"], ids["plus"], prompt_len, target)
                                      - _sequence_logprob(model, source["minus"], ids["minus"], prompt_len, target)))
    finally:
        for p, frozen in zip(params, was_frozen):
            p.grad = None
            if frozen:
                p.requires_grad_(False)
    seconds = time.perf_counter() - start
    phi = {which: (total[which] * (inputs[which] - bases[which]).float())[0].sum(dim=-1).cpu()
           for which in ("plus", "minus")}
    delta = float(phi["plus"].sum() + phi["minus"].sum()) - (f_values[0] - f_values[1])
    return ReferenceResult(
        plus_scores=phi["plus"].tolist(), minus_scores=phi["minus"].tolist(),
        scores=(phi["plus"][:prompt_len] + phi["minus"][:prompt_len]).tolist(),
        f_input=f_values[0], f_baseline=f_values[1], delta=delta, seconds=seconds,
    )
