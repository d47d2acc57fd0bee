"""Conversion: TruthfulQA questions into the preference pairs the GrAInS paper builds from."""

from __future__ import annotations

from grains.data.records import MCQuestion, PreferenceExample
from grains.errors import DataError


def truthfulqa_to_pairs(questions: list[MCQuestion]) -> list[PreferenceExample]:
    """Turn TruthfulQA questions into preference pairs as the GrAInS paper does.

    prompt = `Q: {question}\\nA:`, chosen = " " + best answer, rejected = " " + first incorrect answer. The leading
    space makes each answer tokenise as a continuation of `A:` (as a word after a space), not as a glued-on token.

    Args:
        questions: TruthfulQA questions (load_truthfulqa).

    Returns:
        One PreferenceExample per question; a question without an incorrect answer raises DataError.

    Example:
        >>> pairs = truthfulqa_to_pairs(load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=2))
        >>> pairs[0].prompt.startswith("Q: ") and pairs[0].prompt.endswith("\\nA:")
        True
    """
    pairs = []
    for index, q in enumerate(questions):
        if not q.incorrect_answers:
            raise DataError(f"question {index + 1} has no incorrect answer to use as the rejected response")
        chosen, rejected = " " + q.best_answer.strip(), " " + q.incorrect_answers[0].strip()
        if chosen == rejected:
            raise DataError(f"question {index + 1} has the same best and first incorrect answer")
        meta = {"source": "truthfulqa", "category": q.category, "question": q.question}
        pairs.append(PreferenceExample(prompt=q.prompt, chosen=chosen, rejected=rejected, meta=meta))
    return pairs
