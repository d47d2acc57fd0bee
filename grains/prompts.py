"""Prompt formats and tokenisation, with prompt and response tokenised apart.

Three formats, always explicit: `raw` (the text exactly as written), `qa` (the `Q: ...\\nA:` wrapper) and `chat` (the
model's chat template). Models with a chat template default to `chat`, base models to `raw`. A response is joined to a
raw or qa prompt with one space unless the prompt already ends in whitespace or the response starts with it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from grains.errors import InputError

PromptFormat = Literal["raw", "qa", "chat"]
PromptStyle = PromptFormat  # the older name
PROMPT_FORMATS: tuple[str, ...] = ("raw", "qa", "chat")
DEFAULT_MAX_PROMPT_TOKENS = 1024
DEFAULT_MAX_RESPONSE_TOKENS = 256
MAX_TEXT_CHARS = 20_000
_QA_PATTERN = re.compile(r"^Q:\s*(.*?)\s*\n\s*A:$", re.DOTALL)


@dataclass
class PromptEncoding:
    """A tokenised prompt. Masks are per token: content = the user's own words; special = BOS/template specials."""

    text: str
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    content_mask: list[bool]
    special_mask: list[bool]
    image_mask: list[bool] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def check_text(value: str, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Reject empty, whitespace-only, non-string or overlong text with a clear message."""
    if not isinstance(value, str):
        raise InputError(f"The {what} must be text.")
    if not value.strip():
        raise InputError(f"The {what} is empty.")
    if len(value) > max_chars:
        raise InputError(f"The {what} is {len(value):,} characters long; the limit is {max_chars:,}.")
    return value


def check_format(prompt_format: str) -> PromptFormat:
    """A prompt format name, checked.

    Args:
        prompt_format: "raw", "qa" or "chat".

    Returns:
        The same name.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise InputError(f"Unknown prompt format {prompt_format!r}: use raw (as written), qa (Q: ... A:) or chat.")
    return prompt_format  # type: ignore[return-value]


def has_chat_template(tokenizer: Any) -> bool:
    """True when the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def choose_style(tokenizer: Any, use_chat_template: bool | None = None,
                 prompt_format: str | None = None) -> PromptFormat:
    """The prompt format a model uses by default.

    Args:
        tokenizer: the model's tokenizer.
        use_chat_template: the older switch; False means raw text, True the chat template.
        prompt_format: an explicit format, which wins.

    Returns:
        `prompt_format` when given; else chat for a tokenizer with a chat template and raw otherwise.
    """
    has_template = has_chat_template(tokenizer)
    if prompt_format is None and use_chat_template is not None:
        prompt_format = "chat" if use_chat_template else "raw"
    if prompt_format is None:
        return "chat" if has_template else "raw"
    fmt = check_format(prompt_format)
    if fmt == "chat" and not has_template:
        raise InputError("This model's tokenizer has no chat template: use the raw or qa prompt format.")
    return fmt


def qa_text(prompt: str) -> str:
    """`Q: {question}\\nA:`; a prompt already in that form is kept, and a leading "Q:" is not doubled."""
    stripped = prompt.strip()
    if _QA_PATTERN.match(stripped):
        return stripped
    question = stripped[2:].strip() if stripped.startswith("Q:") else stripped
    return f"Q: {question}\nA:"


def format_prompt(tokenizer: Any, prompt: str, style: PromptStyle) -> tuple[str, tuple[int, int]]:
    """The prompt text the model sees, and the character span of the user's words inside it."""
    if style == "chat":
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    elif style == "qa":
        text = qa_text(prompt)
    else:
        text = prompt
    content = prompt.strip()
    already_qa = _QA_PATTERN.match(content)
    if already_qa:  # the user's words are the question, not the "Q:"/"A:" scaffolding
        content = already_qa.group(1).strip()
    start = text.find(content)
    span = (start, start + len(content)) if start >= 0 else (0, len(text))
    return text, span


def format_response(response: str, style: PromptStyle, after: str | None = None) -> str:
    """The response text as it follows the prompt.

    Args:
        response: the answer as given.
        style: the prompt format.
        after: the formatted prompt text it continues (None: assume it ends without whitespace).

    Returns:
        For chat, the response without leading whitespace (a new assistant turn). For raw and qa, the response with
        one joining space unless it starts with whitespace or the prompt ends with it.
    """
    if style == "chat":
        return response.lstrip()
    if response[:1].isspace() or (after is not None and (not after or after[-1:].isspace())):
        return response
    return " " + response


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, tok in added.items() if getattr(tok, "special", False))
    return ids


def tokenize_text(tokenizer: Any, text: str, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character offsets of `text`."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    return list(enc["input_ids"]), offsets


def token_strings(tokenizer: Any, ids: list[int], text: str | None = None,
                  offsets: list[tuple[int, int]] | None = None) -> list[str]:
    """Readable token strings: the exact text slice when offsets are known, else the decoded token."""
    out = []
    for i, tid in enumerate(ids):
        piece = ""
        if text is not None and offsets is not None and offsets[i][1] > offsets[i][0]:
            piece = text[offsets[i][0]:offsets[i][1]]
        if not piece:
            piece = tokenizer.decode([tid], skip_special_tokens=False)
        out.append(piece)
    return out


def encode_prompt(tokenizer: Any, prompt: str, style: PromptStyle,
                  max_tokens: int = DEFAULT_MAX_PROMPT_TOKENS) -> PromptEncoding:
    """Format and tokenise a prompt, marking which tokens are the user's content and which are special."""
    check_text(prompt, "prompt")
    text, (c0, c1) = format_prompt(tokenizer, prompt, style)
    # A chat template writes BOS itself; plain text gets the tokenizer's own BOS.
    ids, offsets = tokenize_text(tokenizer, text, add_special_tokens=(style != "chat"))
    if len(ids) > max_tokens:
        raise InputError(f"The prompt is {len(ids):,} tokens long; the limit is {max_tokens:,}.")
    special = _special_ids(tokenizer)
    special_mask = [tid in special for tid in ids]
    content_mask = [
        (not special_mask[i]) and offsets[i][1] > offsets[i][0] and offsets[i][0] < c1 and offsets[i][1] > c0
        for i in range(len(ids))
    ]
    return PromptEncoding(text=text, ids=ids, tokens=token_strings(tokenizer, ids, text, offsets), offsets=offsets,
                          content_mask=content_mask, special_mask=special_mask, image_mask=[False] * len(ids))


@dataclass
class ResponseEncoding:
    text: str
    ids: list[int]
    tokens: list[str]
    special_mask: list[bool]


def encode_response(tokenizer: Any, response: str, style: PromptStyle,
                    max_tokens: int = DEFAULT_MAX_RESPONSE_TOKENS, after: str | None = None) -> ResponseEncoding:
    """Tokenise a response on its own (never `prompt + response` sliced: BPE merges would mis-cut).

    `after` is the formatted prompt text the response continues (see `format_response`)."""
    check_text(response, "response")
    text = format_response(response, style, after)
    ids, offsets = tokenize_text(tokenizer, text, add_special_tokens=False)
    if not ids:
        raise InputError("The response has no tokens.")
    if len(ids) > max_tokens:
        raise InputError(f"The response is {len(ids):,} tokens long; the limit is {max_tokens:,}.")
    special = _special_ids(tokenizer)
    return ResponseEncoding(text=text, ids=ids, tokens=token_strings(tokenizer, ids, text, offsets),
                            special_mask=[t in special for t in ids])


def is_punctuation(token: str) -> bool:
    """True for tokens made only of punctuation and whitespace."""
    stripped = token.strip()
    return bool(stripped) and all(ch in string.punctuation or not ch.isalnum() for ch in stripped)


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into [B, T] ids and attention mask. Causal models never look right, so outputs
    at real positions are unchanged by the padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def pad_aligned(prompts: list[list[int]], responses: list[list[int]] | None,
                pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of prompt + response ids padded so that every prompt ends in the same column (padding on the left of
    the prompt and on the right of the response), with the attention mask and position ids counted from each row's
    first real token, so each row's outputs are those of the row alone. Every response then occupies the same
    columns, and `logits_to_keep` can skip the prompts: the output layer is most of the cost with a large vocabulary.

    Args:
        prompts: prompt ids per row.
        responses: response ids per row (None: prompts only, each ending in the last column).
        pad_id: the padding token.

    Returns:
        (ids, attention mask, position ids), each [rows, longest prompt + longest response].
    """
    responses = responses if responses is not None else [[] for _ in prompts]
    prompt_width = max(len(p) for p in prompts)
    width = prompt_width + max(len(r) for r in responses)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        start, end = prompt_width - len(prompt), prompt_width + len(response)
        ids[i, start:end] = torch.tensor(prompt + response, dtype=torch.long)
        mask[i, start:end] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)
