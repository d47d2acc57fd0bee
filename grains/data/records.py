"""The rows a dataset loads into: preference pairs, TruthfulQA multiple-choice questions, POPE-style yes/no
probes, and the key sets that tell the three formats apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DatasetKind = Literal["truthfulqa", "pairs", "probes"]
PAIR_KEYS = ("prompt", "chosen", "rejected")
PROBE_KEYS = ("image", "question", "answer")
TRUTHFULQA_KEYS = ("question", "mc1_choices", "mc1_label")


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt with a preferred and a dispreferred response; `image` is an absolute path or None.

    Args:
        prompt: the prompt as the model will see it (formatted by the model's prompt format).
        chosen: the preferred response.
        rejected: the dispreferred response.
        image: an image path for a vision-language model.
        meta: the row's other fields.

    Example:
        >>> pair = PreferenceExample("Q: Is the sky blue?\\nA:", " Yes.", " No.")
        >>> built = grains.build_vector(lm, [pair, ...])
    """

    prompt: str
    chosen: str
    rejected: str
    image: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class MCQuestion:
    """A TruthfulQA multiple-choice question (MC1: exactly one true choice, at index `label`).

    MC2 answers: `mc2_choices` with `mc2_labels` (1 true, 0 false, true ones first), from the row's `mc2_targets`
    when it has them (`mc2_source` "mc2_targets"), else `correct_answers` + `incorrect_answers` ("fallback").

    Args:
        question: the question.
        prompt: `Q: {question}\nA:`.
        choices: the MC1 choices.
        label: the index of the MC1 true choice.
        correct_answers: true answers.
        incorrect_answers: false answers.
        best_answer: the best true answer.
        category: TruthfulQA's category.
        mc2_choices, mc2_labels, mc2_source: the MC2 answers (see above).

    Example:
        >>> q = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=1)[0]
        >>> q.choices[q.label] == q.best_answer
        True
    """

    question: str
    prompt: str
    choices: tuple[str, ...]
    label: int
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    best_answer: str
    category: str = ""
    mc2_choices: tuple[str, ...] = ()
    mc2_labels: tuple[int, ...] = ()
    mc2_source: Literal["mc2_targets", "fallback"] = "fallback"

    def __post_init__(self) -> None:
        if not self.mc2_choices:  # no MC2 targets given: the fallback set, true answers first
            n_true, n_false = len(self.correct_answers), len(self.incorrect_answers)
            object.__setattr__(self, "mc2_choices", self.correct_answers + self.incorrect_answers)
            object.__setattr__(self, "mc2_labels", (1,) * n_true + (0,) * n_false)
            object.__setattr__(self, "mc2_source", "fallback")


@dataclass(frozen=True)
class YesNoProbe:
    """A POPE-style object-presence probe: is `object` in the image? `answer` is 'yes' or 'no'.

    Args:
        image: the image's absolute path.
        question: the question as the model sees it.
        answer: "yes" or "no".
        object: the object asked about.

    Example:
        >>> probe = load_probes(BUILTIN_DATASETS["pope_style"], limit=1)[0]
        >>> probe.answer in ("yes", "no")
        True
    """

    image: str
    question: str
    answer: str
    object: str = ""
