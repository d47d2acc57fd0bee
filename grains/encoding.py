"""A preference example tokenised for GrAInS: the shared prompt, and s+ = prompt + chosen, s- = prompt + rejected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import InputError
from grains.prompts import PromptEncoding, ResponseEncoding, encode_response, is_punctuation

if TYPE_CHECKING:
    from grains.models import LoadedModel


@dataclass
class EncodedExample:
    """Prompt and both responses, tokenised apart and concatenated by ids.

    Args:
        prompt: the prompt's encoding.
        chosen: the chosen answer's encoding (ids continue the prompt).
        rejected: the rejected answer's.

    Example:
        >>> example = encode_example(lm, "Is the sky blue?", " Yes", " No")
        >>> example.sequence_ids("plus") == example.prompt.ids + example.chosen.ids
        True
    """

    prompt: PromptEncoding
    chosen: ResponseEncoding
    rejected: ResponseEncoding

    @property
    def prompt_len(self) -> int:
        return len(self.prompt.ids)

    def sequence_ids(self, which: str) -> list[int]:
        """Ids of s+ ("plus") or s- ("minus")."""
        return self.prompt.ids + (self.chosen.ids if which == "plus" else self.rejected.ids)

    def sequence_tokens(self, which: str) -> list[str]:
        return self.prompt.tokens + (self.chosen.tokens if which == "plus" else self.rejected.tokens)

    def keep_mask(self, which: str) -> torch.Tensor:
        """Positions the baseline keeps at their real embedding: BOS and template specials."""
        response = self.chosen if which == "plus" else self.rejected
        return torch.tensor(self.prompt.special_mask + response.special_mask, dtype=torch.bool)

    def read_position(self, which: str, position: str = "answer") -> int:
        """Where the ablation delta is read: the last token of the sequence ("answer") or of the prompt ("prompt")."""
        return self.prompt_len - 1 if position == "prompt" else len(self.sequence_ids(which)) - 1

    def eligible_mask(self, which: str, content_only: bool = True, skip_punctuation: bool = False,
                      position: str = "answer") -> list[bool]:
        """Tokens top-k may pick. Content only: the user's words, the response and image tokens; never specials.
        Only tokens before the read position (see `read_position`) are eligible: removing a later token cannot
        change the state read there, and the read token itself has an IG score of exactly 0."""
        response = self.chosen if which == "plus" else self.rejected
        prompt_ok = [
            (c or im) if content_only else not s
            for c, s, im in zip(self.prompt.content_mask, self.prompt.special_mask, self.prompt.image_mask)
        ]
        mask = prompt_ok + [not s for s in response.special_mask]
        if skip_punctuation:
            tokens = self.sequence_tokens(which)
            image = self.prompt.image_mask + [False] * len(response.ids)
            mask = [m and (im or not is_punctuation(t)) for m, t, im in zip(mask, tokens, image)]
        read = self.read_position(which, position)
        return [m and i < read for i, m in enumerate(mask)]

    @property
    def extras(self) -> dict[str, Any]:
        return self.prompt.extras


def encode_example(lm: LoadedModel, prompt: str, chosen: str, rejected: str, image: Any = None) -> EncodedExample:
    """Tokenise a preference example for a loaded model; identical answers are rejected.

    Args:
        lm: the loaded model (its prompt format applies to the prompt).
        prompt: the prompt as the user wrote it.
        chosen: the preferred answer.
        rejected: the other answer.
        image: an image for a vision-language model.

    Returns:
        The EncodedExample; answers that are equal, or tokenise the same, raise InputError.

    Example:
        >>> example = encode_example(lm, "Is the sky blue?", " Yes", " No")
        >>> example.read_position("plus") == len(example.sequence_ids("plus")) - 1
        True
    """
    if isinstance(chosen, str) and isinstance(rejected, str) and chosen.strip() == rejected.strip() and chosen.strip():
        raise InputError("The chosen and rejected answers are identical: attribution needs two different answers.")
    prompt_enc = lm.encode_prompt(prompt, image=image)
    chosen_enc = encode_response(lm.tokenizer, chosen, lm.prompt_style, after=prompt_enc.text)
    rejected_enc = encode_response(lm.tokenizer, rejected, lm.prompt_style, after=prompt_enc.text)
    if chosen_enc.ids == rejected_enc.ids:
        raise InputError("The chosen and rejected answers tokenise identically: give two different answers.")
    return EncodedExample(prompt=prompt_enc, chosen=chosen_enc, rejected=rejected_enc)
