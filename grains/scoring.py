"""Log-probabilities of whole responses given a prompt, under whatever steering hooks are active."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import InputError
from grains.prompts import PromptEncoding, encode_response, pad_aligned, pad_right

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

ROWS_PER_FORWARD = 8
LOGIT_FLOATS_PER_FORWARD = 48_000_000  # rows x kept positions x vocabulary: ~190 MB of fp32 logits at a time
# Rows x padded length per pass: bounds the attention scores (rows x heads x length^2). On the CPU smaller passes of
# long prompts are faster (a 24-pair cross-validation on long prompts: 39 s unbounded, 24 s at 8192, 18 s at 2048).
TOKENS_PER_FORWARD = 2048


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
    if lm.adapter.is_vlm or any(getattr(p, "image", None) is not None for p in pairs):
        return [score_pair(lm, p.prompt, p.chosen, p.rejected, getattr(p, "image", None), steering) for p in pairs]
    rows: list[tuple[list[int], list[int]]] = []
    for p in pairs:
        if p.chosen.strip() == p.rejected.strip():
            raise InputError("The chosen and rejected answers are identical.")
        enc = lm.encode_prompt(p.prompt)
        for response in (p.chosen, p.rejected):
            rows.append((enc.ids, encode_response(lm.tokenizer, response, lm.prompt_style, after=enc.text).ids))
    vocab = int(lm.model.get_output_embeddings().weight.shape[0])
    # Rows of similar length share a pass (each pass pads to its longest prompt and response); sums go back in order.
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), len(rows[i][1])))
    sorted_sums: list[float] = []
    with steering.apply(lm) if steering is not None else nullcontext():
        for chunk in _chunks([rows[i] for i in order], vocab):
            sorted_sums.extend(_aligned_logprobs(lm, chunk))
    sums = [0.0] * len(rows)
    for position, i in enumerate(order):
        sums[i] = sorted_sums[position]
    return [PairScore(sums[2 * i], sums[2 * i + 1], len(rows[2 * i][1]), len(rows[2 * i + 1][1]))
            for i in range(len(pairs))]


def _chunks(rows: list[tuple[list[int], list[int]]], vocab: int) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Consecutive rows, as many per forward pass as keep the kept logits under LOGIT_FLOATS_PER_FORWARD and the
    padded tokens under TOKENS_PER_FORWARD (a single row may exceed either: it gets a pass of its own)."""
    chunk: list[tuple[list[int], list[int]]] = []
    widest, longest_prompt = 0, 0
    for prompt, response in rows:
        wider, longer = max(widest, len(response) + 1), max(longest_prompt, len(prompt))
        rows_after = len(chunk) + 1
        if chunk and (rows_after * wider * vocab > LOGIT_FLOATS_PER_FORWARD
                      or rows_after * (longer + wider) > TOKENS_PER_FORWARD):
            yield chunk
            chunk, wider, longer = [], len(response) + 1, len(prompt)
        chunk.append((prompt, response))
        widest, longest_prompt = wider, longer
    if chunk:
        yield chunk


def _aligned_logprobs(lm: LoadedModel, rows: list[tuple[list[int], list[int]]]) -> list[float]:
    """Sum of log P(response | prompt) per (prompt ids, response ids) row, all rows in one forward pass."""
    response_width = max(len(r) for _, r in rows)
    ids, mask, positions = pad_aligned([p for p, _ in rows], [r for _, r in rows], lm.tokenizer.pad_token_id or 0)
    device = lm.adapter.input_device
    with torch.no_grad():
        out = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       use_cache=False, logits_to_keep=response_width + 1)
        logits = out.logits[:, :response_width].float()  # column j predicts response token j
        targets = torch.zeros((len(rows), response_width), dtype=torch.long)
        for i, (_, response) in enumerate(rows):
            targets[i, : len(response)] = torch.tensor(response)
        picked = logits.gather(-1, targets.to(logits.device).unsqueeze(-1)).squeeze(-1)
        logprobs = picked - torch.logsumexp(logits, dim=-1)
    return [float(logprobs[i, : len(response)].sum()) for i, (_, response) in enumerate(rows)]
