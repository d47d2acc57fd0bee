"""Prompt formatting and tokenisation: chat template or plain `Q: ...\\nA:`, prompt and response tokenised apart."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from grains.errors import InputError

PromptStyle = Literal["chat", "qa", "raw"]
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


def choose_style(tokenizer: Any, use_chat_template: bool | None) -> PromptStyle:
    """Chat template when the tokenizer has one (unless switched off), else plain Q/A."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        return "chat" if has_template else "qa"
    if use_chat_template and not has_template:
        raise InputError("This model's tokenizer has no chat template.")
    return "chat" if use_chat_template else "qa"


def format_prompt(tokenizer: Any, prompt: str, style: PromptStyle) -> tuple[str, tuple[int, int]]:
    """The prompt text the model sees, and the character span of the user's words inside it."""
    if style == "chat":
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    elif style == "qa":
        stripped = prompt.rstrip()
        text = prompt if stripped.endswith("A:") else f"Q: {prompt.strip()}\nA:"
    else:
        text = prompt
    content = prompt.strip()
    already_qa = _QA_PATTERN.match(content)
    if already_qa:  # the user's words are the question, not the "Q:"/"A:" scaffolding
        content = already_qa.group(1).strip()
    start = text.find(content)
    span = (start, start + len(content)) if start >= 0 else (0, len(text))
    return text, span


def format_response(response: str, style: PromptStyle) -> str:
    """Q/A prompts end with "A:", so a response continues after a space; a chat turn starts without one."""
    if style == "chat":
        return response.lstrip()
    return response if response[:1].isspace() else " " + response


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
                    max_tokens: int = DEFAULT_MAX_RESPONSE_TOKENS) -> ResponseEncoding:
    """Tokenise a response on its own (never `prompt + response` sliced: BPE merges would mis-cut)."""
    check_text(response, "response")
    text = format_response(response, style)
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
