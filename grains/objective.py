"""The contrastive objective IG integrates: f(s+, s-) = log P(chosen | prompt) - log P(rejected | prompt), evaluated
from input embeddings (both sequences in one right-padded batch, logits only at response positions), and the variant
that runs the prompt once per point for both responses (SharedPromptObjective)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from grains.encoding import EncodedExample
from grains.logprobs import target_logprobs

if TYPE_CHECKING:
    from grains.models import LoadedModel

if TYPE_CHECKING:
    pass

Target = Literal["sequence", "last"]


class ContrastiveObjective:
    """f(s+, s-) = log P(chosen | prompt) - log P(rejected | prompt), evaluated from input embeddings.

    Both sequences are right-padded into one batch and only the logits at response positions are computed.
    """

    def __init__(self, lm: LoadedModel, example: EncodedExample, target: Target = "sequence"):
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


class SharedPromptObjective(ContrastiveObjective):
    """The same f, with the prompt run once per point: its keys and values (KV cache) are repeated for s+ and s-,
    and both responses continue from them in one batch; the backward pass runs through both responses into the
    one prompt. The prompt is read from the s+ embeddings, so the prompt's gradient (and score) is the sum of its
    s+ and s- parts and lands on s+ (the prompt heatmap, s+ score plus s- score, is unchanged; the s- prompt
    scores are 0). Text models only; build keeps the per-sequence split (the plain objective)."""

    def __call__(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor) -> torch.Tensor:
        n, p = emb_plus.shape[0], self.example.prompt_len
        model = self.lm.model
        device = emb_plus.device
        out = model(inputs_embeds=emb_plus[:, :p], attention_mask=torch.ones((n, p), dtype=torch.long, device=device),
                    use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(2)  # rows: (s+ of point 0, s- of point 0, s+ of point 1, ...)
        width = self.width - p
        resp = torch.stack([self._pad(emb_plus)[:, p:], self._pad(emb_minus)[:, p:]], dim=1).reshape(2 * n, width, -1)
        mask = torch.stack([self.mask[0], self.mask[1]]).repeat(n, 1)
        rest = model(inputs_embeds=resp, attention_mask=mask, past_key_values=cache, use_cache=True,
                     logits_to_keep=width).logits
        rest = rest if rest.shape[1] == width else rest[:, -width:, :]
        first = out.logits[:, -1:, :].repeat_interleave(2, dim=0)
        logits = torch.cat([first, rest], dim=1)[:, : self.keep]  # [2n, keep, V], interleaved rows
        order = torch.cat([torch.arange(0, 2 * n, 2), torch.arange(1, 2 * n, 2)]).to(device)
        logits = logits[order]  # [plus rows, minus rows], as the plain objective lays them out
        targets, weights = (t.repeat_interleave(n, dim=0) for t in self.target_ids_and_weights)
        logprobs = target_logprobs(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).view(2 * n, -1)
        per_row = (logprobs * weights).sum(dim=1)
        return per_row[:n] + per_row[n:]
