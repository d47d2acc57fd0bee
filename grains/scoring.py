"""Log-probabilities of whole responses given a prompt, under whatever steering hooks are active."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import InputError
from grains.prefix_cache import CachedRows
from grains.prompts import PromptEncoding, encode_response, pad_right

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

ROWS_PER_FORWARD = 8


def resolve_image(image: Any) -> Any:
    """A dataset's image path (already checked by the loader) or an image object, as a PIL image.

    Args:
        image: a path, a PIL image or None.

    Returns:
        A PIL image, or None.

    Example:
        >>> resolve_image("assets/images/coffee.jpg").mode
        'RGB'
    """
    if image is None or not isinstance(image, str):
        return image
    from grains.images import load_image

    return load_image(image)


def response_logprobs(lm: LoadedModel, prompt: PromptEncoding, responses: list[str]) -> tuple[list[float], list[int]]:
    """Sum of log P(response tokens | prompt) for each response, and each response's token count.

    For a text model the prompt runs once and every response continues from its KV cache (the prompt is most of
    the tokens, so this halves the cost of a pair); a VLM runs each prompt + response in full.

    Args:
        lm: the model.
        prompt: the encoded prompt.
        responses: the answers, each continuing the prompt.

    Returns:
        (log-probability sums, token counts), one of each per response.

    Example:
        >>> logps, counts = response_logprobs(lm, lm.encode_prompt("Q: Sky?\\nA:"), [" Blue", " Green"])
    """
    encoded = [encode_response(lm.tokenizer, r, lm.prompt_style, after=prompt.text) for r in responses]
    if not lm.adapter.is_vlm and not prompt.extras:
        return _shared_prefix_logprobs(lm, prompt, [r.ids for r in encoded])
    return _full_logprobs(lm, prompt, [r.ids for r in encoded])


def _pick(logprobs: torch.Tensor, targets: list[int]) -> float:
    """Sum of logprobs[j, targets[j]] (one row of predictions per target token)."""
    index = torch.tensor(targets, device=logprobs.device).view(-1, 1)
    return float(logprobs[: len(targets)].gather(-1, index).sum())


def _shared_prefix_logprobs(
    lm: LoadedModel, prompt: PromptEncoding, responses: list[list[int]]
) -> tuple[list[float], list[int]]:
    model, device = lm.model, lm.adapter.input_device
    pad = lm.tokenizer.pad_token_id or 0
    p = len(prompt.ids)
    sums: list[float] = []
    with torch.no_grad():
        prefix = model(input_ids=torch.tensor([prompt.ids], device=device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(prefix.logits[0, -1].float(), dim=-1)
        for start in range(0, len(responses), ROWS_PER_FORWARD):
            chunk = responses[start:start + ROWS_PER_FORWARD]
            ids, mask = pad_right(chunk, pad)
            cache = copy.deepcopy(prefix.past_key_values)
            cache.batch_repeat_interleave(len(chunk))
            full_mask = torch.cat([torch.ones((len(chunk), p), dtype=torch.long), mask], dim=1)
            out = model(input_ids=ids.to(device), attention_mask=full_mask.to(device), past_key_values=cache,
                        use_cache=True)
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
            for i, row in enumerate(chunk):
                total = float(first[row[0]]) if row else 0.0
                if len(row) > 1:
                    total += _pick(logprobs[i], row[1:])
                sums.append(total)
    return sums, [len(r) for r in responses]


def _full_logprobs(lm: LoadedModel, prompt: PromptEncoding,
                   responses: list[list[int]]) -> tuple[list[float], list[int]]:
    sums: list[float] = []
    p = len(prompt.ids)
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(responses), ROWS_PER_FORWARD):
        chunk = responses[start:start + ROWS_PER_FORWARD]
        ids, mask = pad_right([prompt.ids + r for r in chunk], pad)
        keep = ids.shape[1] - p + 1
        extras = lm.adapter.expand_extras(prompt.extras, len(chunk))
        with torch.no_grad():
            embeds = lm.adapter.embed_ids(ids, extras)
            device = embeds.device
            out = lm.adapter.forward_embeds(embeds, attention_mask=mask.to(device), extras=extras,
                                            input_ids=ids.to(device), logits_to_keep=keep)
            logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1)
        for i, row in enumerate(chunk):
            sums.append(_pick(logprobs[i], row))
    return sums, [len(r) for r in responses]


@dataclass
class PairScore:
    """The log-probabilities of a chosen and a rejected answer after one prompt, with their token counts.

    Args:
        logp_chosen: log P(chosen | prompt).
        logp_rejected: log P(rejected | prompt).
        tokens_chosen: the chosen answer's tokens.
        tokens_rejected: the rejected answer's tokens.

    Example:
        >>> score = score_pair(lm, "Q: Is the sky blue?\\nA:", " Yes", " No")
        >>> score.logp_chosen - score.logp_rejected
    """
    logp_chosen: float
    logp_rejected: float
    tokens_chosen: int
    tokens_rejected: int

    def margin(self, length_normalize: bool = False) -> float:
        if length_normalize:
            return self.logp_chosen / self.tokens_chosen - self.logp_rejected / self.tokens_rejected
        return self.logp_chosen - self.logp_rejected


def score_pair(lm: LoadedModel, prompt: str, chosen: str, rejected: str, image: Any = None,
               steering: Steering | None = None) -> PairScore:
    """log P(chosen | prompt) and log P(rejected | prompt).

    Args:
        lm: the model (its prompt format applies).
        prompt: the prompt.
        chosen: the preferred answer.
        rejected: the dispreferred answer.
        image: an image for a VLM.
        steering: score under this steering (None: as the model is).

    Returns:
        The PairScore.

    Example:
        >>> score_pair(lm, "Q: Is the sky blue?\\nA:", " Yes", " No", steering=steering).logp_chosen
    """
    if chosen.strip() == rejected.strip():
        raise InputError("The chosen and rejected answers are identical.")
    enc = lm.encode_prompt(prompt, image=resolve_image(image))
    with steering.apply(lm) if steering is not None else nullcontext():
        (lc, lr), (nc, nr) = response_logprobs(lm, enc, [chosen, rejected])
    return PairScore(lc, lr, nc, nr)


def score_pairs(lm: LoadedModel, pairs: Sequence[Any], steering: Steering | None = None) -> list[PairScore]:
    """`score_pair` for many pairs at once: on a text model, several pairs share each forward pass.

    On a CPU each forward pass reads all the weights, so scoring one short pair at a time is dominated by that read;
    cross-validation scores hundreds of pairs per cell grid. Rows are aligned on the end of their prompt (padding on
    the left of the prompt and on the right of the response, positions counted from each row's first real token),
    so every row's response sits in the same columns and only those columns reach the output layer. The scores
    equal `score_pair`'s up to float rounding (tested). A VLM, or a prompt with extras, is scored pair by pair.

    Args:
        lm: the model (its prompt format applies).
        pairs: items with `prompt`, `chosen`, `rejected` and optionally `image`.
        steering: score under this steering (None: as the model is).

    Returns:
        One PairScore per pair, in order.

    Example:
        >>> [s.margin() for s in score_pairs(lm, dataset_rows, steering=steering)]
    """
    if not pair_rows_supported(lm, pairs):
        return [score_pair(lm, p.prompt, p.chosen, p.rejected, getattr(p, "image", None), steering) for p in pairs]
    rows = pair_rows(lm, pairs)
    with lm.lock:
        sums = CachedRows(lm, rows, enabled=False).logprob_sums(steering)
    return pair_scores(rows, sums)


def pair_rows_supported(lm: LoadedModel, pairs: Sequence[Any]) -> bool:
    """Whether pairs can share aligned forward passes: a text model and no images."""
    return not lm.adapter.is_vlm and all(getattr(p, "image", None) is None for p in pairs)


def pair_rows(lm: LoadedModel, pairs: Sequence[Any]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) rows, chosen then rejected for each pair, in the model's prompt format.

    Args:
        lm: a text model.
        pairs: items with `prompt`, `chosen` and `rejected`.

    Returns:
        2 rows per pair; identical answers raise InputError.
    """
    rows: list[tuple[list[int], list[int]]] = []
    for p in pairs:
        if p.chosen.strip() == p.rejected.strip():
            raise InputError("The chosen and rejected answers are identical.")
        enc = lm.encode_prompt(p.prompt)
        for response in (p.chosen, p.rejected):
            rows.append((enc.ids, encode_response(lm.tokenizer, response, lm.prompt_style, after=enc.text).ids))
    return rows


def pair_scores(rows: Sequence[tuple[list[int], list[int]]], sums: Sequence[float]) -> list[PairScore]:
    """PairScores from the rows of `pair_rows` (whole pairs, in order) and their log-probability sums.

    Args:
        rows: 2 rows per pair (chosen, rejected).
        sums: one log-probability sum per row.

    Returns:
        One PairScore per pair.
    """
    return [PairScore(sums[2 * i], sums[2 * i + 1], len(rows[2 * i][1]), len(rows[2 * i + 1][1]))
            for i in range(len(rows) // 2)]
