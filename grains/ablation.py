"""Ablation deltas: how each layer's hidden state moves when the top-k tokens are replaced by the baseline.

For s in {s+, s-}: d+(s) = h_l(s) - h_l(s without I+(s)), d-(s) = h_l(s) - h_l(s without I-(s)), read at the last
token of the full sequence (the answer's position, as CAA does) or, as a variant, at the last prompt token.
The same forward also gives CAA's difference h_l(s+) - h_l(s-) and the layers' typical hidden-state norms.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from grains.attribution import AttributionResult, baseline_embeddings, input_embeddings
from grains.encoding import EncodedExample
from grains.local_hooks import local_forward_hooks
from grains.topk import TokenSelection, select_top_k

if TYPE_CHECKING:
    from grains.models import LoadedModel

Position = Literal["answer", "prompt"]


@dataclass
class ExampleDeltas:
    """One example's shifts, all layers at once. d_plus/d_minus: [2 (s+, s-), L, D]; caa: [L, D]; norms: [L].

    Args:
        d_plus: d+ for s+ and s- (None for CAA only).
        d_minus: d- for s+ and s- (None for CAA only).
        caa: h(s+) - h(s-).
        norms: each layer's median token norm over the rows.
        selections: the top-k tokens removed per sequence.
        attribution: the attribution the top-k came from (None for CAA), for its convergence.

    Example:
        >>> deltas = ablation_deltas(lm, example, select_for_example(example, attribute_example(lm, example), k=5))
        >>> deltas.d_plus.shape == (2, lm.num_layers, lm.hidden_size)
        True
    """

    d_plus: torch.Tensor | None
    d_minus: torch.Tensor | None
    caa: torch.Tensor
    norms: torch.Tensor
    selections: dict[str, TokenSelection] | None = None
    attribution: AttributionResult | None = None


@contextmanager
def record_layer_outputs(lm: LoadedModel) -> Iterator[list[torch.Tensor]]:
    """Collect every decoder layer's output hidden states (what a steering hook sees) during one forward.

    Args:
        lm: the model.

    Returns:
        A context manager yielding the list the outputs are appended to, one [B, T, D] tensor per layer; the hooks
        come off on every path.

    Example:
        >>> with torch.no_grad(), record_layer_outputs(lm) as outputs:
        ...     lm.adapter.forward_embeds(embeds)
        >>> len(outputs) == lm.num_layers
        True
    """
    outputs: list[torch.Tensor] = []

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        outputs.append((output if isinstance(output, torch.Tensor) else output[0]).detach())

    with local_forward_hooks([(layer, hook) for layer in lm.adapter.layers]):  # other threads' passes not recorded
        yield outputs


def _rows_forward(lm: LoadedModel, example: EncodedExample, rows: list[tuple[str, torch.Tensor]],
                  read_at: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run right-padded rows of embeddings; return hidden states [R, L, D] at `read_at` per row and the median
    token norm per layer over all real positions of all rows [L]."""
    lengths = [emb.shape[1] for _, emb in rows]
    width = max(lengths)
    dim = rows[0][1].shape[-1]
    embeds = rows[0][1].new_zeros(len(rows), width, dim)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=embeds.device)
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=embeds.device)
    for i, (which, emb) in enumerate(rows):
        embeds[i, : lengths[i]] = emb[0]
        mask[i, : lengths[i]] = 1
        ids[i, : lengths[i]] = torch.tensor(example.sequence_ids(which), device=embeds.device)
    extras = lm.adapter.expand_extras(example.extras, len(rows))
    with torch.no_grad(), record_layer_outputs(lm) as outputs:
        lm.adapter.forward_embeds(embeds, attention_mask=mask, extras=extras, input_ids=ids, logits_to_keep=1)
    stacked = torch.stack([o.float().to(embeds.device) for o in outputs], dim=1)  # [R, L, T, D]
    picked = stacked[torch.arange(len(rows)), :, torch.tensor(read_at)]  # [R, L, D]
    real = mask.bool()
    norms = stacked.norm(dim=-1)  # [R, L, T]
    per_layer = torch.stack([norms[:, layer][real].median() for layer in range(stacked.shape[1])])
    return picked.cpu(), per_layer.cpu()


def caa_deltas(lm: LoadedModel, example: EncodedExample, position: Position = "answer") -> ExampleDeltas:
    """CAA's contrast only: h_l(prompt + chosen) - h_l(prompt + rejected) at the read position.

    Args:
        lm: the model.
        example: the encoded example.
        position: "answer" (the last token of each sequence) or "prompt" (the last prompt token).

    Returns:
        ExampleDeltas with `caa` and `norms` only.

    Example:
        >>> deltas = caa_deltas(lm, encode_example(lm, "Q: Sky?\\nA:", " Blue", " Green"))
        >>> deltas.caa.shape == (lm.num_layers, lm.hidden_size)
        True
    """
    plus, minus = input_embeddings(lm, example)
    read = _read_positions(example, position)
    hidden, norms = _rows_forward(lm, example, [("plus", plus), ("minus", minus)], [read["plus"], read["minus"]])
    return ExampleDeltas(d_plus=None, d_minus=None, caa=hidden[0] - hidden[1], norms=norms)


def _read_positions(example: EncodedExample, position: Position) -> dict[str, int]:
    return {w: example.read_position(w, position) for w in ("plus", "minus")}


def select_for_example(example: EncodedExample, attribution: AttributionResult, k: int, content_only: bool = True,
                       skip_punctuation: bool = False, strict: bool = False,
                       overrides: dict[str, dict[str, list[int]]] | None = None,
                       position: Position = "answer") -> dict[str, TokenSelection]:
    """Top-k per sequence, among the tokens before the read position. `overrides` = {"plus"|"minus":
    {"force_positive": [...], "force_negative": [...], "drop": [...]}} with positions in that sequence.

    Args:
        example: the encoded example.
        attribution: its AttributionResult (plus_scores, minus_scores).
        k: tokens per side.
        content_only: only the user's words, the answers and image tokens are eligible.
        skip_punctuation: punctuation is never picked.
        strict: asking for more than half the eligible tokens is an error.
        overrides: forced and dropped positions per sequence.
        position: the read position (see EncodedExample.read_position).

    Returns:
        {"plus": TokenSelection, "minus": TokenSelection}.

    Example:
        >>> chosen = select_for_example(example, attribute_example(lm, example, steps=8), k=5)
        >>> chosen["plus"].positive
    """
    out = {}
    for which, scores in (("plus", attribution.plus_scores), ("minus", attribution.minus_scores)):
        extra = (overrides or {}).get(which, {})
        out[which] = select_top_k(scores, k, example.eligible_mask(which, content_only, skip_punctuation, position),
                                  force_positive=extra.get("force_positive", ()),
                                  force_negative=extra.get("force_negative", ()), drop=extra.get("drop", ()),
                                  strict=strict)
    return out


def ablation_deltas(lm: LoadedModel, example: EncodedExample, selections: dict[str, TokenSelection],
                    baseline: str = "zero", position: Position = "answer") -> ExampleDeltas:
    """d+ and d- for both sequences in one batched forward of six rows.

    Args:
        lm: the model.
        example: the encoded example.
        selections: the tokens to remove per sequence (select_for_example).
        baseline: what a removed token becomes: "zero" or "pad".
        position: the read position.

    Returns:
        The ExampleDeltas (d+, d-, CAA's difference and the layer norms).

    Example:
        >>> deltas = ablation_deltas(lm, example, selections)
        >>> float(deltas.d_plus.norm()) > 0
        True
    """
    inputs = input_embeddings(lm, example)
    bases = baseline_embeddings(lm, example, inputs, baseline)  # type: ignore[arg-type]
    read = _read_positions(example, position)
    rows: list[tuple[str, torch.Tensor]] = []
    read_at: list[int] = []
    for which, emb, base in zip(("plus", "minus"), inputs, bases):
        sel = selections[which]
        without_pos = emb.clone()
        without_pos[0, sel.positive] = base[0, sel.positive]
        without_neg = emb.clone()
        without_neg[0, sel.negative] = base[0, sel.negative]
        rows += [(which, emb), (which, without_pos), (which, without_neg)]
        read_at += [read[which]] * 3
    hidden, norms = _rows_forward(lm, example, rows, read_at)
    h_plus, h_plus_np, h_plus_nn, h_minus, h_minus_np, h_minus_nn = hidden
    d_plus = torch.stack([h_plus - h_plus_np, h_minus - h_minus_np])
    d_minus = torch.stack([h_plus - h_plus_nn, h_minus - h_minus_nn])
    return ExampleDeltas(d_plus=d_plus, d_minus=d_minus, caa=h_plus - h_minus, norms=norms, selections=selections)
