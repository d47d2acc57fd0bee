"""The output layer on just the columns a score reads: the same sums, fewer output-layer rows, the hook removed."""

from __future__ import annotations

import pytest
import torch

from grains.models import load_model
from grains.packing import pack
from grains.prefix_cache import CachedRows
from grains.read_columns import only_read_columns, read_columns, read_sums


def _full_sums(lm, prompt: list[int], response: list[int]) -> float:
    """log P(response | prompt) from one plain forward of the row alone."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[len(prompt) - 1 + i, t] for i, t in enumerate(response)))


def test_packed_columns_read_the_prompt_end_for_every_first_token():
    responses = [[[5, 6, 7], [8, 9]], [[4]]]
    batch = pack([[1, 2], [3]], responses, pad_id=0)
    columns = read_columns(responses, batch.spans)
    # response 1 of row 0 starts at kept column 4 (prompt end + 3 tokens of response 0); its first token is read at
    # column 0, the prompt's end, which response 0's first token reads too: one output row for both
    assert columns.rows.tolist() == [0, 0, 0, 0, 1]
    assert columns.columns.tolist() == [0, 1, 2, 4, 0]
    assert columns.reads.tolist() == [0, 1, 2, 0, 3, 4]
    assert columns.targets.tolist() == [5, 6, 7, 8, 9, 4]
    assert columns.lengths == [[3, 2], [1]] and columns.total == 5


def test_responses_sharing_a_beginning_read_its_logits_once():
    responses = [[[5, 6, 7], [5, 6, 9], [5, 8]]]
    columns = read_columns(responses, pack([[1]], responses, pad_id=0).spans)
    # contexts read: (), (5,), (5, 6): every token of the second and third responses reads one of them
    assert columns.total == 3 and columns.reads.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert columns.targets.tolist() == [5, 6, 7, 5, 6, 9, 5, 8]
    unpacked = read_columns([[[5, 6]], [[5, 7]]])  # rows of their own: nothing shared
    assert unpacked.total == 4 and unpacked.columns.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("name", ["tiny-random-qwen2", "tiny-random-gemma3"])
def test_scores_equal_full_logits_with_fewer_output_rows(name):
    lm = load_model(name)
    rows = [([11, 12, 13], [21, 22, 23, 24, 25]), ([11, 12, 13], [26]),  # one prompt, two answers: packed
            ([14, 15], [27, 28]), ([14, 15], [27, 30, 31]), ([14, 15], [29])]
    cache = CachedRows(lm, rows)
    head = lm.model.get_output_embeddings()
    seen: list[int] = []
    handle = head.register_forward_hook(lambda m, a, out: seen.append(out.shape[0] * out.shape[1]))
    try:
        got = cache.logprob_sums()
    finally:
        handle.remove()
    want = [_full_sums(lm, p, r) for p, r in rows]
    assert got == pytest.approx(want, abs=1e-5)
    # only the read positions go through the output layer, nothing for padding: packed, one per distinct context;
    # rows of their own (the tiny Gemma's sliding window is shorter than a packed row), one per response token
    contexts = {(tuple(p), tuple(r[:i])) for p, r in rows for i in range(len(r))}
    assert cache.packed == (name == "tiny-random-qwen2")
    assert sum(seen) == (len(contexts) if cache.packed else sum(len(r) for _, r in rows))
    assert len(contexts) == 8


def test_hook_comes_off_after_an_error():
    lm = load_model("tiny-random-qwen2")
    head = lm.model.get_output_embeddings()
    columns = read_columns([[[3, 4]]])
    with pytest.raises(RuntimeError, match="boom"), only_read_columns(lm, columns):
        assert len(head._forward_pre_hooks) == 1
        raise RuntimeError("boom")
    assert len(head._forward_pre_hooks) == 0


def test_no_response_tokens_read_as_zero():
    columns = read_columns([[[]], [[]]])
    assert read_sums(torch.zeros((1, 0, 7)), columns) == [[0.0], [0.0]]
