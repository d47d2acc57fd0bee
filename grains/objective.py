"""The contrastive objective IG integrates: f(s+, s-) = log P(chosen | prompt) - log P(rejected | prompt), evaluated
from input embeddings (both sequences in one right-padded batch, logits only at response positions), and the variant
that runs the prompt once per point for both responses (SharedPromptObjective), with the same gradients."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import torch

from grains.encoding import EncodedExample
from grains.logprobs import target_logprobs

if TYPE_CHECKING:
    from grains.models import LoadedModel

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
        per_row = self._row_terms(emb_plus, emb_minus)
        n = emb_plus.shape[0]
        return per_row[:n] + per_row[n:]  # log P(y+ | x) - log P(y- | x): the minus rows carry weight -1

    def value_and_gradients(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f at each point and its gradients with respect to the s+ and s- embeddings (both require grad).

        Args:
            emb_plus: [n, T+, D] points on the s+ path.
            emb_minus: [n, T-, D] points on the s- path.

        Returns:
            (f [n], df/d emb_plus, df/d emb_minus).
        """
        values = self(emb_plus, emb_minus)
        grad_plus, grad_minus = torch.autograd.grad(values.sum(), (emb_plus, emb_minus))
        return values.detach(), grad_plus, grad_minus

    def _row_terms(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor) -> torch.Tensor:
        """[2n]: log P(chosen | prompt) of each s+ row, then -log P(rejected | prompt) of each s- row."""
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
        return (logprobs * weights).sum(dim=1)


class SharedPromptObjective(ContrastiveObjective):
    """The same f and the same gradients, with the prompt run once per point: each response continues from its own
    fork of the prompt's KV cache, and `value_and_gradients` runs two backward passes, one from log P(chosen | prompt)
    and one from -log P(rejected | prompt). The prompt is read from the s+ embeddings; the part of its gradient that
    comes from the s- term is moved to s-, so the prompt keeps its per-sequence split exactly as the plain objective
    gives it. One prompt forward and two prompt backwards instead of two of each, but more passes over the weights:
    slower than the plain objective on two CPU threads (benchmarks/README.md, "Prompt sharing"), so only on request.
    Text models whose logits are the output layer's product (grains.contrast_columns.plain_output_layer) only."""

    def __init__(self, lm: LoadedModel, example: EncodedExample, target: Target = "sequence"):
        super().__init__(lm, example, target)
        self.decoder = lm.model.get_decoder()
        self.head = lm.model.get_output_embeddings()

    def _hidden(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final hidden states: the prompt's last position [n, 1, D], then the s+ and s- responses' [n, width, D],
        each response continuing from its own copy of the prompt's cache (so each backward pass meets only its own)."""
        n, p = emb_plus.shape[0], self.example.prompt_len
        ones = torch.ones((n, p), dtype=torch.long, device=emb_plus.device)
        prompt = self.decoder(inputs_embeds=emb_plus[:, :p], attention_mask=ones, use_cache=True)
        caches = (prompt.past_key_values, _fork(prompt.past_key_values))
        rest = [self.decoder(inputs_embeds=self._pad(emb)[:, p:], attention_mask=self.mask[row].expand(n, -1),
                             past_key_values=cache, use_cache=True).last_hidden_state
                for row, (emb, cache) in enumerate(zip((emb_plus, emb_minus), caches))]
        return prompt.last_hidden_state[:, -1:], rest[0], rest[1]

    def _response_terms(self, last: torch.Tensor, rest: torch.Tensor, row: int) -> torch.Tensor:
        """[n]: the weighted log-probability sum of one response (row 0: s+, 1: s-) at each point."""
        n = last.shape[0]
        hidden = torch.cat([last, rest], dim=1)  # position j predicts response token j: [n, keep, D]
        logits = self.head(hidden.reshape(n * self.keep, -1))
        targets, weights = (t[row].expand(n, -1) for t in self.target_ids_and_weights)
        return (target_logprobs(logits, targets.reshape(-1)).view(n, -1) * weights).sum(dim=1)

    def _row_terms(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor) -> torch.Tensor:
        last, rest_plus, rest_minus = self._hidden(emb_plus, emb_minus)
        return torch.cat([self._response_terms(last, rest_plus, 0), self._response_terms(last, rest_minus, 1)])

    def value_and_gradients(self, emb_plus: torch.Tensor, emb_minus: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ContrastiveObjective.value_and_gradients (the same numbers to float rounding)."""
        p = self.example.prompt_len
        last, rest_plus, rest_minus = self._hidden(emb_plus, emb_minus)
        plus = self._response_terms(last, rest_plus, 0)
        minus = self._response_terms(last, rest_minus, 1)
        (grad_plus,) = torch.autograd.grad(plus.sum(), (emb_plus,), retain_graph=True)
        # the s- term reaches the prompt through the s+ embeddings it was read from: that part belongs to s-
        prompt_part, grad_minus = torch.autograd.grad(minus.sum(), (emb_plus, emb_minus))
        grad_minus = torch.cat([prompt_part[:, :p], grad_minus[:, p:]], dim=1)
        return (plus + minus).detach(), grad_plus, grad_minus


def _fork(cache: Any) -> Any:
    """A second KV cache over the same prompt tensors: a cache layer appends by rebinding its tensors (torch.cat),
    so shallow copies of the cache and its layers grow apart without copying the prompt's keys and values, and
    gradients reach the prompt through both."""
    twin = copy.copy(cache)
    twin.layers = [copy.copy(layer) for layer in cache.layers]
    return twin
