"""Validating one row: required and optional text fields, lists of strings, image paths that must stay inside the
dataset's folder (or the shipped assets), and the parsers that turn a row into a PreferenceExample, MCQuestion or
YesNoProbe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grains.data.builtin import ASSETS_DIR
from grains.data.files import type_name
from grains.data.records import PAIR_KEYS, MCQuestion, PreferenceExample, YesNoProbe
from grains.errors import DataError
from grains.truthfulqa_metrics import check_mc2_labels


def _text(row: dict[str, Any], key: str, line: int, where: str, required: bool = True) -> str:
    """A non-empty string field (stripped only for the emptiness check)."""
    if key not in row:
        if not required:
            return ""
        raise DataError(f'the row has no "{key}" field', line=line, path=where)
    value = row[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f'"{key}" must be a string, got {type_name(value)}', line=line, path=where)
    if required and not value.strip():
        raise DataError(f'"{key}" is empty', line=line, path=where)
    _check_encodable(value, key, line, where)
    return value


def _check_encodable(value: str, key: str, line: int, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f'"{key}" contains an invalid Unicode escape', line=line, path=where) from None


def _text_list(row: dict[str, Any], key: str, line: int, where: str, min_len: int = 0) -> tuple[str, ...]:
    """A list of non-empty strings with at least `min_len` entries."""
    value = row.get(key)
    if not isinstance(value, list):
        raise DataError(f'"{key}" must be a list of strings, got {type_name(value)}', line=line, path=where)
    if len(value) < min_len:
        raise DataError(f'"{key}" must have at least {min_len} entries, got {len(value)}', line=line, path=where)
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f'every entry of "{key}" must be a non-empty string', line=line, path=where)
        _check_encodable(item, key, line, where)
    return tuple(value)


def image_root_for(dataset: Path, image_root: str | Path | None) -> Path:
    """The folder image paths must stay inside: given, or the shipped assets for built-ins, or the file's folder.

    Args:
        dataset: the dataset file.
        image_root: a folder given by the caller, or None.

    Returns:
        The resolved folder.

    Example:
        >>> image_root_for(Path("assets/data/pope_style.jsonl"), None) == ASSETS_DIR
        True
    """
    if image_root is not None:
        return Path(image_root).resolve()
    folder = dataset.resolve().parent
    return ASSETS_DIR if folder.is_relative_to(ASSETS_DIR) else folder


def _resolve_image(value: str, root: Path, base: Path, line: int, where: str) -> str:
    """Resolve an image path against the dataset's folder; refuse paths that leave `root` or do not exist."""
    try:
        target = (base / value).resolve()
        inside = target.is_relative_to(root)
        exists = inside and target.is_file()
    except (OSError, ValueError):
        raise DataError(f'the image path "{value[:80]}" is not a valid path', line=line, path=where) from None
    if not inside:
        raise DataError(f'the image path "{value[:80]}" points outside the dataset folder', line=line, path=where)
    if not exists:
        raise DataError(f'the image "{value[:80]}" does not exist', line=line, path=where)
    return str(target)


def parse_pair(row: dict[str, Any], line: int, where: str, base: Path, root: Path) -> PreferenceExample:
    """One row as a PreferenceExample; a missing, empty or mistyped field raises DataError naming the line.

    Args:
        row: the parsed row.
        line: its 1-based line number.
        where: the file's name.
        base: the folder relative image paths resolve against.
        root: the folder images must stay inside.

    Returns:
        The PreferenceExample.

    Example:
        >>> parse_pair({"prompt": "Q", "chosen": " a", "rejected": " b", "src": "x"}, 1, "x", Path("."), Path("."))
        PreferenceExample(prompt='Q', chosen=' a', rejected=' b', image=None, meta={'src': 'x'})
    """
    prompt = _text(row, "prompt", line, where)
    chosen = _text(row, "chosen", line, where)
    rejected = _text(row, "rejected", line, where)
    if chosen.strip() == rejected.strip():
        raise DataError('"chosen" and "rejected" are the same answer', line=line, path=where)
    image_value = _text(row, "image", line, where, required=False)
    image = _resolve_image(image_value, root, base, line, where) if image_value.strip() else None
    meta = {k: v for k, v in row.items() if k not in (*PAIR_KEYS, "image")}
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, image=image, meta=meta)


def parse_probe(row: dict[str, Any], line: int, where: str, base: Path, root: Path) -> YesNoProbe:
    """One row as a YesNoProbe; a missing, empty or mistyped field raises DataError naming the line.

    Args:
        row, line, where, base, root: as in `parse_pair`.

    Returns:
        The YesNoProbe.

    Example:
        >>> parse_probe({"image": "images/coffee.jpg", "question": "Is there a cup?", "answer": "Yes"}, 1, "x",
        ...             ASSETS_DIR, ASSETS_DIR).answer
        'yes'
    """
    image = _resolve_image(_text(row, "image", line, where), root, base, line, where)
    question = _text(row, "question", line, where)
    answer = _text(row, "answer", line, where).strip().lower()
    if answer not in ("yes", "no"):
        raise DataError(f'"answer" must be "yes" or "no", got "{answer[:40]}"', line=line, path=where)
    obj = _text(row, "object", line, where, required=False)
    return YesNoProbe(image=image, question=question, answer=answer, object=obj)


def _mc2_targets(row: dict[str, Any], line: int, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The row's `mc2_targets` {"choices": [...], "labels": [1, ..., 0, ...]}, checked."""
    targets = row["mc2_targets"]
    if not isinstance(targets, dict) or set(targets) != {"choices", "labels"}:
        raise DataError(f'"mc2_targets" must be an object with "choices" and "labels", got {type_name(targets)}'
                        f'{" with other keys" if isinstance(targets, dict) else ""}', line=line, path=where)
    choices = _text_list({"mc2_targets.choices": targets["choices"]}, "mc2_targets.choices", line, where, min_len=2)
    if len(set(choices)) != len(choices):
        raise DataError('"mc2_targets.choices" repeats a choice', line=line, path=where)
    labels = targets["labels"]
    if not isinstance(labels, list) or len(labels) != len(choices):
        raise DataError(f'"mc2_targets.labels" must be a list of {len(choices)} labels (one per choice)',
                        line=line, path=where)
    try:
        check_mc2_labels(labels)
    except ValueError as exc:
        raise DataError(f'"mc2_targets.labels": {exc}', line=line, path=where) from None
    return choices, tuple(labels)


def parse_truthfulqa(row: dict[str, Any], line: int, where: str) -> MCQuestion:
    """One row as an MCQuestion; every optional field is checked when present.

    Args:
        row: the parsed row.
        line: its 1-based line number.
        where: the file's name.

    Returns:
        The MCQuestion.

    Example:
        >>> q = parse_truthfulqa({"question": "Sky?", "mc1_choices": ["Blue.", "Green."], "mc1_label": 0}, 1, "x")
        >>> q.best_answer, q.incorrect_answers
        ('Blue.', ('Green.',))
    """
    question = _text(row, "question", line, where)
    choices = _text_list(row, "mc1_choices", line, where, min_len=2)
    if len(set(choices)) != len(choices):
        raise DataError('"mc1_choices" repeats a choice', line=line, path=where)
    label = row.get("mc1_label")
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataError(f'"mc1_label" must be a whole number, got {type_name(label)}', line=line, path=where)
    if not 0 <= label < len(choices):
        raise DataError(
            f'"mc1_label" is {label}, outside 0..{len(choices) - 1} for {len(choices)} choices', line=line, path=where
        )
    best = _text(row, "best_answer", line, where) if "best_answer" in row else choices[label]
    correct = _text_list(row, "correct_answers", line, where) if "correct_answers" in row else (best,)
    if "incorrect_answers" in row:
        incorrect = _text_list(row, "incorrect_answers", line, where, min_len=1)
    else:
        incorrect = tuple(c for i, c in enumerate(choices) if i != label)
    category = _text(row, "category", line, where, required=False)
    mc2_choices, mc2_labels = _mc2_targets(row, line, where) if "mc2_targets" in row else ((), ())
    return MCQuestion(
        question=question,
        prompt=f"Q: {question}\nA:",
        choices=choices,
        label=label,
        correct_answers=correct,
        incorrect_answers=incorrect,
        best_answer=best,
        category=category,
        mc2_choices=mc2_choices,
        mc2_labels=mc2_labels,
        mc2_source="mc2_targets" if "mc2_targets" in row else "fallback",
    )
