"""grains.encoding on a tiny random model: s+ and s- are the prompt's ids plus each answer's, the baseline keeps
exactly the specials, the read position and the tokens top-k may pick."""

from __future__ import annotations

import pytest

from grains.encoding import encode_example
from grains.errors import InputError

PROMPT, CHOSEN, REJECTED = "Is the sky blue?", " Yes, it is.", " No"


@pytest.fixture(scope="module")
def example(tiny_llama):
    return encode_example(tiny_llama, PROMPT, CHOSEN, REJECTED)


def test_sequences_are_prompt_plus_answer(tiny_llama, example):
    p = example.prompt_len
    assert p == len(example.prompt.ids) > 0
    for which, answer in (("plus", example.chosen), ("minus", example.rejected)):
        ids = example.sequence_ids(which)
        assert ids[:p] == example.prompt.ids and ids[p:] == answer.ids
        assert len(example.sequence_tokens(which)) == len(ids)
    assert example.chosen.ids != example.rejected.ids
    assert len(example.chosen.ids) > len(example.rejected.ids)
    assert tiny_llama.tokenizer.decode(example.chosen.ids).strip() == CHOSEN.strip()


def test_keep_mask_is_the_special_tokens(example):
    for which, answer in (("plus", example.chosen), ("minus", example.rejected)):
        keep = example.keep_mask(which).tolist()
        assert keep == example.prompt.special_mask + answer.special_mask
        assert len(keep) == len(example.sequence_ids(which))
    assert any(example.prompt.special_mask) or not any(example.keep_mask("plus").tolist())


def test_read_position(example):
    assert example.read_position("plus") == len(example.sequence_ids("plus")) - 1
    assert example.read_position("minus") == len(example.sequence_ids("minus")) - 1
    assert example.read_position("plus", "prompt") == example.read_position("minus", "prompt") == example.prompt_len - 1


def test_eligible_tokens(example):
    for which in ("plus", "minus"):
        n = len(example.sequence_ids(which))
        answer = example.chosen if which == "plus" else example.rejected
        mask = example.eligible_mask(which)
        assert len(mask) == n and not mask[-1]  # the read token itself is never picked
        specials = example.prompt.special_mask + answer.special_mask
        assert not any(m and s for m, s in zip(mask, specials))
        # content only: template and non-content prompt tokens are out; every answer token before the end is in
        assert mask[example.prompt_len:n - 1] == [not s for s in answer.special_mask[:-1]]
        content = [c or im for c, im in zip(example.prompt.content_mask, example.prompt.image_mask)]
        assert mask[:example.prompt_len] == [c and i < n - 1 for i, c in enumerate(content)]
        at_prompt = example.eligible_mask(which, position="prompt")
        assert not any(at_prompt[example.prompt_len - 1:])  # nothing at or after the prompt's last token
        assert sum(at_prompt) >= 1
    tokens = example.sequence_tokens("plus")
    no_punct = example.eligible_mask("plus", skip_punctuation=True)
    commas = [i for i, t in enumerate(tokens) if t.strip() in (",", ".", "?")]
    assert commas and not any(no_punct[i] for i in commas)
    assert sum(no_punct) < sum(example.eligible_mask("plus"))


def test_identical_answers_are_refused(tiny_llama):
    with pytest.raises(InputError, match="identical"):
        encode_example(tiny_llama, PROMPT, " Yes", "Yes ")
    assert encode_example(tiny_llama, PROMPT, " Yes", " No").extras == {}
