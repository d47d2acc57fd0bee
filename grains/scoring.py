"""Log-probabilities of whole responses given a prompt, under whatever steering hooks are active."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from grains.errors import InputError
from grains.prompts import PromptEncoding, encode_response

ROWS_PER_FORWARD = 8


def resolve_image(image: Any) -> Any:
    """A dataset's image path (already checked by the loader) or an image object, as a PIL image."""
    if image is None or not isinstance(image, str):
        return image
    from grains.images import load_image

    return load_image(image)


def response_logprobs(lm: Any, prompt: PromptEncoding, responses: list[str]) -> tuple[list[float], list[int]]:
    """Sum of log P(response tokens | prompt) for each response, and each response's token count."""
    encoded = [encode_response(lm.tokenizer, r, lm.prompt_style) for r in responses]
    sums: list[float] = []
    counts: list[int] = []
    p = len(prompt.ids)
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(encoded), ROWS_PER_FORWARD):
        chunk = encoded[start:start + ROWS_PER_FORWARD]
        rows = [prompt.ids + r.ids for r in chunk]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        keep = width - p + 1
        extras = lm.adapter.expand_extras(prompt.extras, len(rows))
        with torch.no_grad():
            embeds = lm.adapter.embed_ids(ids, extras)
            device = embeds.device
            out = lm.adapter.forward_embeds(embeds, attention_mask=mask.to(device), extras=extras,
                                            input_ids=ids.to(device), logits_to_keep=keep)
            logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1)
        for i, r in enumerate(chunk):
            target = torch.tensor(r.ids, device=logprobs.device)
            picked = logprobs[i, : len(r.ids)].gather(-1, target.view(-1, 1)).squeeze(-1)
            sums.append(float(picked.sum()))
            counts.append(len(r.ids))
    return sums, counts


@dataclass
class PairScore:
    logp_chosen: float
    logp_rejected: float
    tokens_chosen: int
    tokens_rejected: int

    def margin(self, length_normalize: bool = False) -> float:
        if length_normalize:
            return self.logp_chosen / self.tokens_chosen - self.logp_rejected / self.tokens_rejected
        return self.logp_chosen - self.logp_rejected


def score_pair(lm: Any, prompt: str, chosen: str, rejected: str, image: Any = None) -> PairScore:
    """log P(chosen | prompt) and log P(rejected | prompt)."""
    if chosen.strip() == rejected.strip():
        raise InputError("The chosen and rejected answers are identical.")
    enc = lm.encode_prompt(prompt, image=resolve_image(image))
    (lc, lr), (nc, nr) = response_logprobs(lm, enc, [chosen, rejected])
    return PairScore(lc, lr, nc, nr)
