"""The public loaders, one per format (TruthfulQA questions, preference pairs, yes/no probes), format detection from
the first row's keys, and `load_any`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from grains.data.files import CSV_SUFFIXES, check_window, iter_rows, window_rows
from grains.data.records import PAIR_KEYS, PROBE_KEYS, TRUTHFULQA_KEYS
from grains.data.rows import image_root_for, parse_pair, parse_probe, parse_truthfulqa
from grains.errors import DataError

if TYPE_CHECKING:
    from grains.data.records import DatasetKind, MCQuestion, PreferenceExample, YesNoProbe

T = TypeVar("T")


def load_truthfulqa(path: str | Path, limit: int | None = None, offset: int = 0) -> list[MCQuestion]:
    """Load TruthfulQA multiple-choice questions (JSONL with question, mc1_choices, mc1_label, ...).

    `best_answer`, `correct_answers`, `incorrect_answers`, `category` and `mc2_targets` are optional; when present
    they are checked. Without them, the best answer is the MC1 true choice and the incorrect answers are the other
    choices; without `mc2_targets`, the MC2 answers are the correct then the incorrect answers (`mc2_source`
    "fallback").

    Args:
        path: the JSONL file.
        limit: at most this many rows (default: all).
        offset: skip this many rows first (they are not validated).

    Returns:
        The MCQuestions; a malformed file or row raises DataError naming the file and line.

    Example:
        >>> questions = load_truthfulqa("assets/data/truthfulqa.jsonl", limit=16)
        >>> pairs = truthfulqa_to_pairs(questions)
    """
    check_window(limit, offset)
    p, rows = iter_rows(path)
    where = str(p)
    if p.suffix.lower() in CSV_SUFFIXES:
        raise DataError("TruthfulQA-style questions (with lists of choices) must be a JSONL file", path=where)
    return [parse_truthfulqa(row, line, where) for line, row in window_rows(rows, limit, offset, where)]


def _load_with_images(path: str | Path, limit: int | None, offset: int, image_root: str | Path | None,
                      parse: Callable[[dict[str, Any], int, str, Path, Path], T]) -> list[T]:
    """The rows of a file whose image paths resolve against its folder and must stay inside `image_root`."""
    check_window(limit, offset)
    p, rows = iter_rows(path)
    where, base = str(p), p.resolve().parent
    root = image_root_for(p, image_root)
    return [parse(row, line, where, base, root) for line, row in window_rows(rows, limit, offset, where)]


def load_pairs(
    path: str | Path, limit: int | None = None, offset: int = 0, image_root: str | Path | None = None
) -> list[PreferenceExample]:
    """Load preference pairs from JSONL or CSV with columns prompt, chosen, rejected and optional image.

    Relative image paths resolve against the dataset file's folder; every image must exist and lie inside
    `image_root` (default: that folder; for the shipped datasets, the assets folder). Extra columns go to `meta`.

    Args:
        path: the JSONL or CSV/TSV file.
        limit: at most this many rows (default: all).
        offset: skip this many rows first (they are not validated).
        image_root: the folder image paths must stay inside.

    Returns:
        The PreferenceExamples; a malformed file or row raises DataError naming the file and line.

    Example:
        >>> pairs = load_pairs("assets/data/sentiment_pairs.jsonl", limit=8)
        >>> pairs[0].chosen != pairs[0].rejected
        True
    """
    return _load_with_images(path, limit, offset, image_root, parse_pair)


def load_probes(
    path: str | Path, limit: int | None = None, offset: int = 0, image_root: str | Path | None = None
) -> list[YesNoProbe]:
    """Load POPE-style probes (image, question, answer yes/no, optional object) from JSONL or CSV.

    Image paths follow the same rules as in `load_pairs`; the returned probes hold absolute image paths.

    Args:
        path, limit, offset, image_root: as in `load_pairs`.

    Returns:
        The YesNoProbes.

    Example:
        >>> probes = load_probes("assets/data/pope_style.jsonl")
        >>> {p.answer for p in probes}
        {'no', 'yes'}
    """
    return _load_with_images(path, limit, offset, image_root, parse_probe)


def detect_format(path: str | Path) -> DatasetKind:
    """Tell a dataset's kind from the keys of its first row.

    Args:
        path: the dataset file.

    Returns:
        "truthfulqa", "pairs" or "probes"; an unknown layout raises DataError listing the expected fields.

    Example:
        >>> detect_format("assets/data/pope_style.jsonl")
        'probes'
    """
    p, rows = iter_rows(path)
    where = str(p)
    for line, row in rows:
        keys = set(row)
        if keys.issuperset(TRUTHFULQA_KEYS):
            return "truthfulqa"
        if keys.issuperset(PAIR_KEYS):
            return "pairs"
        if keys.issuperset(PROBE_KEYS):
            return "probes"
        raise DataError(
            "unknown dataset format: expected the fields prompt/chosen/rejected (pairs), "
            "question/mc1_choices/mc1_label (TruthfulQA) or image/question/answer (yes/no probes)",
            line=line,
            path=where,
        )
    raise DataError("the file has no rows", path=where)


def load_any(
    path: str | Path, limit: int | None = None, offset: int = 0, image_root: str | Path | None = None
) -> tuple[DatasetKind, list[MCQuestion] | list[PreferenceExample] | list[YesNoProbe]]:
    """Detect a dataset's kind and load it with its loader.

    Args:
        path: the dataset file.
        limit: at most this many rows (default: all).
        offset: skip this many rows first (they are not validated).
        image_root: the folder image paths must stay inside (pairs and probes).

    Returns:
        (kind, rows): "truthfulqa" with MCQuestions, "pairs" with PreferenceExamples or "probes" with YesNoProbes.

    Example:
        >>> kind, rows = load_any(BUILTIN_DATASETS["truthfulqa"], limit=4)
        >>> kind, len(rows)
        ('truthfulqa', 4)
    """
    kind = detect_format(path)
    if kind == "truthfulqa":
        return kind, load_truthfulqa(path, limit=limit, offset=offset)
    if kind == "pairs":
        return kind, load_pairs(path, limit=limit, offset=offset, image_root=image_root)
    return kind, load_probes(path, limit=limit, offset=offset, image_root=image_root)
