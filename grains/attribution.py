"""Contrastive Integrated Gradients: which input tokens push the model toward the chosen over the rejected answer.

f = log P(chosen | prompt) - log P(rejected | prompt). Both sequences s+ = prompt + chosen and s- = prompt + rejected
are attributed together (captum IG over their input embeddings), so every token of both gets a score; the prompt's
heatmap is a prompt token's score in s+ plus its score in s-. Completeness: sum of all scores = f(x) - f(baseline),
up to the reported convergence delta.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from captum.attr import IntegratedGradients

from grains.adapters import text_config
from grains.encoding import EncodedExample, encode_example
from grains.errors import InputError
from grains.memory import auto_chunk_size, ig_bytes_per_point, oom_guard

Target = Literal["sequence", "last"]
Baseline = Literal["zero", "pad"]
IntegrationPoints = Literal["gauss-legendre", "midpoint"]
_CAPTUM_METHODS = {"gauss-legendre": "gausslegendre", "midpoint": "riemann_middle"}
MAX_STEPS = 512


@dataclass
class AttributionResult:
    """Per-token IG scores. `tokens`/`scores` cover the prompt (s+ score + s- score); `plus_*`/`minus_*` the full
    sequences. `delta` = sum of all scores - (f_input - f_baseline)."""

    tokens: list[str]
    scores: list[float]
    offsets: list[tuple[int, int]]
    content_mask: list[bool]
    special_mask: list[bool]
    image_mask: list[bool]
    prompt_text: str
    plus_tokens: list[str]
    plus_scores: list[float]
    minus_tokens: list[str]
    minus_scores: list[float]
    prompt_len: int
    f_input: float
    f_baseline: float
    delta: float
    steps: int
    target: str
    baseline: str
    points: str
    chunk_size: int
    seconds: float
    image_grid: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_delta(self) -> float:
        """|delta| relative to |f(x) - f(baseline)|: how far IG is from converged."""
        return abs(self.delta) / max(abs(self.f_input - self.f_baseline), 1e-8)

    @property
    def converged(self) -> bool:
        return self.relative_delta < 0.1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["relative_delta"] = self.relative_delta
        return data


def _check_settings(steps: int, target: str, baseline: str, points: str) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"IG steps must be a whole number from 1 to {MAX_STEPS}.")
    if target not in ("sequence", "last"):
        raise InputError("The IG target must be 'sequence' (whole response) or 'last' (last response token).")
    if baseline not in ("zero", "pad"):
        raise InputError("The baseline must be 'zero' or 'pad'.")
    if points not in _CAPTUM_METHODS:
        raise InputError("Integration points must be 'gauss-legendre' or 'midpoint'.")


class ContrastiveObjective:
    """f(s+, s-) = log P(chosen | prompt) - log P(rejected | prompt), evaluated from input embeddings.

    Both sequences are right-padded into one batch and only the logits at response positions are computed.
    """

    def __init__(self, lm: Any, example: EncodedExample, target: Target = "sequence"):
        self.lm = lm
        self.example = example
        self.target = target
        self.len_plus = len(example.sequence_ids("plus"))
        self.len_minus = len(example.sequence_ids("minus"))
        self.width = max(self.len_plus, self.len_minus)
        # positions prompt_len-1 .. width-1 predict every response token of either sequence
        self.keep = self.width - example.prompt_len + 1
        device = lm.adapter.input_device
        pad = lm.tokenizer.pad_token_id or 0
        ids = torch.full((2, self.width), pad, dtype=torch.long)
        ids[0, : self.len_plus] = torch.tensor(example.sequence_ids("plus"))
        ids[1, : self.len_minus] = torch.tensor(example.sequence_ids("minus"))
        self.padded_ids = ids.to(device)
        mask = torch.zeros((2, self.width), dtype=torch.long)
        mask[0, : self.len_plus] = 1
        mask[1, : self.len_minus] = 1
        self.mask = mask.to(device)
        self.chosen = torch.tensor(example.chosen.ids, device=device)
        self.rejected = torch.tensor(example.rejected.ids, device=device)
        self.target_ids_and_weights = self._targets()

    def _pad(self, emb: torch.Tensor) -> torch.Tensor:
        missing = self.width - emb.shape[1]
        if missing == 0:
            return emb
        return torch.cat([emb, emb.new_zeros(emb.shape[0], missing, emb.shape[2])], dim=1)

    def _targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Target token ids [2, keep] (0 where unused) and weights [2, keep] selecting what f sums, with the
        dispreferred row weighted -1. Row 0 is s+, row 1 is s-."""
        ids = torch.zeros((2, self.keep), dtype=torch.long, device=self.chosen.device)
        weights = torch.zeros((2, self.keep), dtype=torch.float32, device=self.chosen.device)
        for row, (targets, sign) in enumerate(((self.chosen, 1.0), (self.rejected, -1.0))):
            ids[row, : targets.shape[0]] = targets
            if self.target == "last":
                weights[row, targets.shape[0] - 1] = sign
            else:
                weights[row, : targets.shape[0]] = sign
        return ids, weights

    def __call__(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor) -> torch.Tensor:
        n = emb_plus.shape[0]
        embeds = torch.cat([self._pad(emb_plus), self._pad(emb_minus)], dim=0)
        ids = self.padded_ids.repeat_interleave(n, dim=0)
        mask = self.mask.repeat_interleave(n, dim=0)
        extras = self.lm.adapter.expand_extras(self.example.extras, 2 * n)
        out = self.lm.adapter.forward_embeds(embeds, attention_mask=mask, extras=extras, input_ids=ids,
                                             logits_to_keep=self.keep)
        logits = out.logits if out.logits.shape[1] == self.keep else out.logits[:, -self.keep:, :]
        # the kept window starts at prompt_len-1 for both rows, so response token j sits at index j
        targets, weights = (t.repeat_interleave(n, dim=0) for t in self.target_ids_and_weights)
        logprobs = target_logprobs(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).view(2 * n, -1)
        per_row = (logprobs * weights).sum(dim=1)
        return per_row[:n] + per_row[n:]  # log P(y+ | x) - log P(y- | x): the minus rows carry weight -1


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


def input_embeddings(lm: Any, example: EncodedExample) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [1, T, D] of s+ and s- as the decoder sees them (images merged in for a VLM)."""
    with torch.no_grad():
        plus = lm.adapter.embed_ids(torch.tensor([example.sequence_ids("plus")]), example.extras)
        minus = lm.adapter.embed_ids(torch.tensor([example.sequence_ids("minus")]), example.extras)
    return plus.detach(), minus.detach()


def baseline_embeddings(lm: Any, example: EncodedExample, embeds: tuple[torch.Tensor, torch.Tensor],
                        kind: Baseline = "zero") -> tuple[torch.Tensor, torch.Tensor]:
    """The IG baseline: zero (or pad-token) embeddings, with BOS and template specials kept at their real values
    (an all-zero input explodes on RMSNorm models)."""
    out = []
    for which, emb in zip(("plus", "minus"), embeds):
        if kind == "pad":
            pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
            pad_vec = lm.adapter.embed_ids(torch.tensor([[pad_id]]), None)[0, 0].detach()
            base = pad_vec.expand_as(emb).clone()
        else:
            base = torch.zeros_like(emb)
        keep = example.keep_mask(which).to(emb.device)
        base[0, keep] = emb[0, keep]
        out.append(base)
    return out[0], out[1]


def choose_chunk_size(lm: Any, example: EncodedExample, steps: int) -> int:
    """Interpolation points per batch, sized to free memory."""
    cfg = text_config(lm.model.config)
    hidden = int(cfg.hidden_size)
    width = max(len(example.sequence_ids("plus")), len(example.sequence_ids("minus")))
    per_point = ig_bytes_per_point(
        seq_len=width, kept_positions=width - example.prompt_len + 1, hidden=hidden, layers=lm.num_layers,
        intermediate=int(getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden),
        vocab=int(cfg.vocab_size), dtype_bytes=torch.finfo(lm.dtype).bits // 8,
    )
    return auto_chunk_size(steps, per_point, lm.device)


def attribute_example(lm: Any, example: EncodedExample, steps: int = 20, target: Target = "sequence",
                      baseline: Baseline = "zero", points: IntegrationPoints = "gauss-legendre",
                      chunk_size: int | None = None) -> AttributionResult:
    """Contrastive IG for an already-encoded example."""
    _check_settings(steps, target, baseline, points)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError("The chunk size must be a positive whole number.")
    objective = ContrastiveObjective(lm, example, target)
    inputs = input_embeddings(lm, example)
    base = baseline_embeddings(lm, example, inputs, baseline)
    chunk = chunk_size or choose_chunk_size(lm, example, steps)
    start = time.perf_counter()
    with oom_guard("attribution", "use fewer IG steps or a smaller chunk size."):
        ig = IntegratedGradients(objective, multiply_by_inputs=True)
        attr_plus, attr_minus = ig.attribute(
            inputs, baselines=base, n_steps=steps, method=_CAPTUM_METHODS[points], internal_batch_size=chunk
        )
        with torch.no_grad():
            f_values = objective(torch.cat([inputs[0], base[0]]), torch.cat([inputs[1], base[1]]))
    seconds = time.perf_counter() - start
    phi_plus = attr_plus[0].float().sum(dim=-1).cpu()
    phi_minus = attr_minus[0].float().sum(dim=-1).cpu()
    f_input, f_base = float(f_values[0]), float(f_values[1])
    delta = float(phi_plus.sum() + phi_minus.sum()) - (f_input - f_base)
    p = example.prompt_len
    prompt_scores = (phi_plus[:p] + phi_minus[:p]).tolist()
    return AttributionResult(
        tokens=list(example.prompt.tokens), scores=prompt_scores, offsets=list(example.prompt.offsets),
        content_mask=list(example.prompt.content_mask), special_mask=list(example.prompt.special_mask),
        image_mask=list(example.prompt.image_mask), prompt_text=example.prompt.text,
        plus_tokens=example.sequence_tokens("plus"), plus_scores=phi_plus.tolist(),
        minus_tokens=example.sequence_tokens("minus"), minus_scores=phi_minus.tolist(), prompt_len=p,
        f_input=f_input, f_baseline=f_base, delta=delta, steps=steps, target=target, baseline=baseline,
        points=points, chunk_size=chunk, seconds=seconds,
    )


def attribute(lm: Any, prompt: str, chosen: str, rejected: str, image: Any = None, steps: int = 20,
              target: Target = "sequence", baseline: Baseline = "zero", points: IntegrationPoints = "gauss-legendre",
              chunk_size: int | None = None, prompt_format: str | None = None) -> AttributionResult:
    """Contrastive IG of log P(chosen | prompt) - log P(rejected | prompt) over the input tokens.

    Args:
        lm: the loaded model.
        prompt: the prompt as the user wrote it.
        chosen: the preferred answer.
        rejected: the dispreferred answer.
        image: an image for a VLM.
        steps: integration points.
        target: "sequence" (whole response) or "last" (last response token).
        baseline: "zero" or "pad" embeddings.
        points: "gauss-legendre" or "midpoint".
        chunk_size: IG points per forward pass (default: chosen by memory).
        prompt_format: "raw", "qa" or "chat" for this call (default: the model's).

    Returns:
        The AttributionResult; its `prompt_text` is the exact text the model saw.
    """
    lm = lm.with_format(prompt_format)
    example = encode_example(lm, prompt, chosen, rejected, image=image)
    result = attribute_example(lm, example, steps, target, baseline, points, chunk_size)
    if lm.is_vlm:
        lm.adapter.attach_image_scores(result, example)
    return result
