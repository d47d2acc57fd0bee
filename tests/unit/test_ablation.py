"""grains.ablation on a tiny random model: the batched, right-padded six-row forward gives the same shifts as one
unpadded forward per row; an empty selection shifts nothing; hooks come off; top-k stays before the read position."""

from __future__ import annotations

import pytest
import torch

from grains.ablation import (
    ablation_deltas,
    caa_deltas,
    record_layer_outputs,
    select_for_example,
)
from grains.attribution import attribute_example, baseline_embeddings, input_embeddings
from grains.encoding import encode_example
from grains.topk import TokenSelection

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", " Paris, of course.", " London."


@pytest.fixture(scope="module")
def example(lm):
    return encode_example(lm, PROMPT, CHOSEN, REJECTED)


def _hidden_at(lm, emb: torch.Tensor, position: int) -> torch.Tensor:
    """Every layer's output at one position, from a single unpadded row: [L, D]."""
    with torch.no_grad(), record_layer_outputs(lm) as outputs:
        lm.adapter.forward_embeds(emb, attention_mask=torch.ones(1, emb.shape[1], dtype=torch.long))
    return torch.stack([o[0, position].float() for o in outputs])


def test_record_layer_outputs_sees_every_layer_and_removes_its_hooks(lm, example):
    before = [len(layer._forward_hooks) for layer in lm.adapter.layers]
    plus, _ = input_embeddings(lm, example)
    with torch.no_grad(), record_layer_outputs(lm) as outputs:
        lm.adapter.forward_embeds(plus, attention_mask=torch.ones(1, plus.shape[1], dtype=torch.long))
    assert len(outputs) == lm.num_layers
    assert all(o.shape == (1, plus.shape[1], lm.hidden_size) for o in outputs)
    assert [len(layer._forward_hooks) for layer in lm.adapter.layers] == before


def test_deltas_match_one_forward_per_row(lm, example):
    assert len(example.sequence_ids("plus")) != len(example.sequence_ids("minus"))  # the batch really is padded
    selections = {"plus": TokenSelection(positive=[1, 3], negative=[2]),
                  "minus": TokenSelection(positive=[4], negative=[0, 5])}
    deltas = ablation_deltas(lm, example, selections)
    inputs = input_embeddings(lm, example)
    bases = baseline_embeddings(lm, example, inputs, "zero")
    for row, (which, emb, base) in enumerate(zip(("plus", "minus"), inputs, bases)):
        read = example.read_position(which)
        full = _hidden_at(lm, emb, read)
        no_pos, no_neg = emb.clone(), emb.clone()
        no_pos[0, selections[which].positive] = base[0, selections[which].positive]
        no_neg[0, selections[which].negative] = base[0, selections[which].negative]
        torch.testing.assert_close(deltas.d_plus[row], full - _hidden_at(lm, no_pos, read), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(deltas.d_minus[row], full - _hidden_at(lm, no_neg, read), atol=1e-4, rtol=1e-4)
    caa = (_hidden_at(lm, inputs[0], example.read_position("plus"))
           - _hidden_at(lm, inputs[1], example.read_position("minus")))
    torch.testing.assert_close(deltas.caa, caa, atol=1e-4, rtol=1e-4)
    assert deltas.d_plus.shape == (2, lm.num_layers, lm.hidden_size)
    assert float(deltas.d_plus.abs().max()) > 1e-4  # removing tokens does move the state
    assert deltas.norms.shape == (lm.num_layers,) and bool((deltas.norms > 0).all())


def test_empty_selection_shifts_nothing_and_caa_agrees(lm, example):
    empty = {w: TokenSelection(positive=[], negative=[]) for w in ("plus", "minus")}
    deltas = ablation_deltas(lm, example, empty)
    assert float(deltas.d_plus.abs().max()) < 1e-5 and float(deltas.d_minus.abs().max()) < 1e-5
    only_caa = caa_deltas(lm, example)
    assert only_caa.d_plus is None and only_caa.d_minus is None
    torch.testing.assert_close(only_caa.caa, deltas.caa, atol=1e-4, rtol=1e-4)


def test_prompt_position_reads_the_last_prompt_token(lm, example):
    deltas = caa_deltas(lm, example, position="prompt")
    # s+ and s- share every token up to the end of the prompt, so their states there are the same
    assert float(deltas.caa.abs().max()) < 1e-4
    assert float(caa_deltas(lm, example).caa.abs().max()) > 1e-4


@pytest.mark.parametrize("position", ["answer", "prompt"])
def test_selection_stays_before_the_read_position(lm, example, position):
    result = attribute_example(lm, example, steps=4)
    chosen = select_for_example(example, result, k=3, position=position)
    for which, selection in chosen.items():
        read = example.read_position(which, position)
        picked = selection.positive + selection.negative
        assert picked and all(i < read for i in picked)
        eligible = example.eligible_mask(which, position=position)
        assert all(eligible[i] for i in picked)
        scores = result.plus_scores if which == "plus" else result.minus_scores
        best = max((i for i in range(len(scores)) if eligible[i]), key=lambda i: scores[i])
        assert best in selection.positive  # the top positive token is the largest eligible score
