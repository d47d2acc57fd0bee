"""Prompt formats: raw text reaches the model as written; qa and chat only when chosen; responses join cleanly."""

import pytest

from grains.attribution import attribute
from grains.data import BUILTIN_DATASETS, load_pairs
from grains.errors import InputError
from grains.models import load_model
from grains.prompts import choose_style, format_prompt, format_response, qa_text
from grains.scoring import score_pair


@pytest.fixture(scope="module")
def base_lm():
    """A tiny model without a chat template: a base model, so raw is its default."""
    import torch

    from grains.adapters import TextAdapter
    from grains.models import _finish
    from grains.tiny import tiny_text_model

    model, tokenizer = tiny_text_model("llama", chat_template=False)
    return _finish(model, tokenizer, TextAdapter(model), "tiny-base", torch.device("cpu"), torch.float32,
                   random_weights=True)


def test_base_models_default_to_raw_and_chat_models_to_chat(base_lm):
    assert base_lm.prompt_format == "raw"
    assert load_model("tiny-random-llama").prompt_format == "chat"
    assert choose_style(base_lm.tokenizer) == "raw"
    with pytest.raises(InputError, match="no chat template"):
        base_lm.with_format("chat")
    with pytest.raises(InputError, match="Unknown prompt format"):
        base_lm.with_format("markdown")


@pytest.mark.parametrize("prompt", ["My first day at the new job", "Q: What is X?", "Answer:\n", "  spaced  out "])
def test_raw_is_the_text_as_written(base_lm, prompt):
    text, _ = format_prompt(base_lm.tokenizer, prompt, "raw")
    assert text == prompt
    enc = base_lm.encode_prompt(prompt)
    assert enc.text == prompt


def test_qa_wraps_once():
    assert qa_text("What is X?") == "Q: What is X?\nA:"
    assert qa_text("Q: What is X?") == "Q: What is X?\nA:"  # no "Q: Q:"
    assert qa_text("Q: What is X?\nA:") == "Q: What is X?\nA:"


def test_responses_join_with_one_space_unless_whitespace_is_there():
    assert format_response("was great", "raw", after="My first day") == " was great"
    assert format_response(" was great", "raw", after="My first day") == " was great"
    assert format_response("great", "raw", after="It was\n") == "great"
    assert format_response("  Sure", "chat", after="<|assistant|>") == "Sure"


def test_attribution_tokens_join_back_to_the_prompt_as_typed(base_lm):
    prompt = "My first day at the new job"
    result = attribute(base_lm, prompt, " was wonderful", " was awful", steps=4)
    assert result.prompt_text == prompt
    joined = "".join(t for t, special in zip(result.tokens, result.special_mask) if not special)
    assert joined == prompt


def test_the_format_can_be_chosen_per_call(base_lm):
    result = attribute(base_lm, "What is X?", " yes", " no", steps=2, prompt_format="qa")
    assert result.prompt_text == "Q: What is X?\nA:"
    assert base_lm.prompt_format == "raw"  # the call did not change the model's own format


def test_shipped_pairs_are_scored_as_written(base_lm):
    row = load_pairs(BUILTIN_DATASETS["hallucination_pairs"], limit=1)[0]
    assert row.prompt.endswith("Answer:")
    enc = base_lm.encode_prompt(row.prompt)
    assert enc.text == row.prompt and "\nA:" not in enc.text
    score = score_pair(base_lm, row.prompt, row.chosen, row.rejected)
    assert score.tokens_chosen >= 1 and score.tokens_rejected >= 1
