"""A pair's margin from the contexts one side reads (grains.contrast_columns): the same margins as whole sums, fewer
output-layer rows, every position accounted for, a post-processed output layer left to the whole sums."""

from __future__ import annotations

import pytest
import torch

from grains.contrast_columns import contrast_columns, margin_parts, only_contrast_columns, plain_output_layer
from grains.models import load_model
from grains.packing import pack
from grains.prefix_cache import CachedRows
from grains.steering import Steering
from grains.vectors import SteeringVector

# (prompt, chosen, rejected): a shared beginning, a shared first token only, nothing shared, one-token answers, chosen
# a prefix of rejected, and two pairs after the same prompt (packed into one row of four responses)
PAIRS = [([11, 12, 13], [21, 22, 23, 24], [21, 22, 25]),
         ([14, 15], [26, 27], [26, 28, 29, 30]),
         ([16, 17, 18, 19], [31, 32, 33], [34, 35]),
         ([20, 40], [41], [42]),
         ([43], [44, 45], [44, 45, 46]),
         ([47, 48], [49, 50, 51], [52]),
         ([47, 48], [49, 53], [49, 50, 54])]


def _rows() -> list[tuple[list[int], list[int]]]:
    return [(p, r) for p, c, rej in PAIRS for r in (c, rej)]


def _vector(lm) -> SteeringVector:
    gen = torch.Generator().manual_seed(3)
    layers = range(lm.num_layers)
    return SteeringVector(directions={la: torch.randn(lm.hidden_size, generator=gen) for la in layers},
                          layer_norms={la: 1.0 for la in layers}, model_id=lm.model_id, hidden_size=lm.hidden_size,
                          num_layers=lm.num_layers, method="grains", k=5, n_examples=2)


def _full_margin(lm, prompt: list[int], chosen: list[int], rejected: list[int]) -> float:
    """log P(chosen) - log P(rejected), each from one plain forward of its row alone."""
    sums = []
    for response in (chosen, rejected):
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([prompt + response])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        sums.append(float(sum(logprobs[len(prompt) - 1 + i, t] for i, t in enumerate(response))))
    return sums[0] - sums[1]


def test_shared_contexts_cancel_or_read_two_logits():
    responses = [[[21, 22, 23, 24], [21, 22, 25]], [[26, 27], [26, 28, 29, 30]], [[41], [42]], [[44, 45], [44, 45, 46]]]
    columns = contrast_columns(responses, pack([[1], [2], [3], [4]], responses, pad_id=0).spans)
    # row 0: contexts (), (21,) read 21 and 22 on both sides: they cancel and are not read; (21, 22) is read by both
    # with 23 against 25: two logits; (21, 22, 23) is chosen's alone. Row 1: () with 26 on both; (26,) with 27
    # against 28; (26, 28) and (26, 28, 29) rejected's alone. Row 2: () with 41 against 42, nothing else.
    # Row 3: chosen is rejected's beginning: only (44, 45), rejected's alone, reads anything
    assert columns.pair_targets.tolist() == [[23, 25], [27, 28], [41, 42]]
    assert columns.pair_rows.tolist() == [0, 1, 2] and columns.pair_owners.tolist() == [0, 2, 4]
    assert columns.pair_columns.tolist() == [2, 1, 0]  # the column before the differing token (0: the prompt's end)
    assert columns.targets.tolist() == [24, 29, 30, 46] and columns.owners.tolist() == [0, 3, 3, 7]
    assert columns.rows.tolist() == [0, 1, 1, 3] and columns.columns.tolist() == [3, 4, 5, 4]
    assert columns.total == 4 and columns.counts == [2, 2, 2, 2]


def test_an_odd_row_is_refused():
    with pytest.raises(ValueError, match="odd"):
        contrast_columns([[[1], [2], [3]]], [[(1, 1), (2, 1), (3, 1)]])


@pytest.mark.parametrize("name", ["tiny-random-qwen2", "tiny-random-llama"])
def test_margins_equal_whole_sums_with_fewer_output_rows(name):
    lm = load_model(name)
    cache = CachedRows(lm, _rows(), layers=[1])
    assert cache.packed and cache.contrast
    unsteered = [_full_margin(lm, *pair) for pair in PAIRS]
    assert cache.margins() == pytest.approx(unsteered, abs=1e-5)
    head = lm.model.get_output_embeddings()
    seen: list[int] = []
    handle = head.register_forward_hook(lambda m, a, out: seen.append(out.shape[0] * out.shape[1]))
    try:
        for layer, strength in ((1, 2.0), (lm.num_layers - 1, -1.5)):
            steering = Steering.create(lm, _vector(lm), layer, strength)
            with steering.apply(lm):
                plain = [_full_margin(lm, *pair) for pair in PAIRS]
            assert max(abs(a - b) for a, b in zip(plain, unsteered)) > 1e-2  # steering moved them
            seen.clear()
            assert cache.margins(steering) == pytest.approx(plain, abs=1e-5)
            read = sum(seen)
            subset = [6, 0, 3]  # a fold: any pairs, any order
            assert cache.margins(steering, subset) == pytest.approx([plain[j] for j in subset], abs=1e-5)
            seen.clear()
            sums = cache.logprob_sums(steering)
            assert [sums[2 * j] - sums[2 * j + 1] for j in range(len(PAIRS))] == pytest.approx(plain, abs=1e-5)
            # whole sums read every distinct context; margins only those one side reads
            assert (read, sum(seen)) == (9, 19)
    finally:
        handle.remove()


def test_a_post_processed_output_layer_keeps_whole_sums():
    lm = load_model("tiny-random-qwen2")
    assert plain_output_layer(lm)
    lm.model.config.final_logit_softcapping = 30.0  # logits the model reshapes after the output layer
    try:
        assert not plain_output_layer(lm)
        cache = CachedRows(lm, _rows())
        assert cache.packed and not cache.contrast
        steering = Steering.create(lm, _vector(lm), 1, 2.0)
        sums = cache.logprob_sums(steering)
        assert cache.margins(steering) == pytest.approx([sums[2 * j] - sums[2 * j + 1] for j in range(len(PAIRS))],
                                                        abs=1e-9)
    finally:
        lm.model.config.final_logit_softcapping = None
    rows_of_their_own = CachedRows(load_model("tiny-random-gemma3"), _rows())  # sliding window: not packed
    assert not rows_of_their_own.packed and not rows_of_their_own.contrast


def test_hook_comes_off_after_an_error_and_parts_need_the_forward():
    lm = load_model("tiny-random-qwen2")
    head = lm.model.get_output_embeddings()
    columns = contrast_columns([[[3, 4], [5]]], [[(1, 2), (3, 1)]])
    with pytest.raises(ValueError, match="only_contrast_columns"):
        margin_parts(torch.zeros((1, 1, 7)), columns)
    with pytest.raises(RuntimeError, match="boom"), only_contrast_columns(lm, columns):
        assert len(head._forward_pre_hooks) == 1
        raise RuntimeError("boom")
    assert len(head._forward_pre_hooks) == 0
