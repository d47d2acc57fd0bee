"""Dataset loading and validation: TruthfulQA questions, preference pairs, POPE-style yes/no probes.

Files are JSONL (one JSON object per line) or CSV with a header row. Only JSON and CSV are parsed, never pickle.
Every problem with a file or a row raises `DataError` naming the file and the 1-based line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grains.errors import DataError, InputError
from grains.truthfulqa_metrics import check_mc2_labels

MAX_DATASET_BYTES = 20 * 1024 * 1024
_MB = 1024 * 1024
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUILTIN_DATA_DIR = ASSETS_DIR / "data"
BUILTIN_DATASETS: dict[str, Path] = {
    "truthfulqa": BUILTIN_DATA_DIR / "truthfulqa.jsonl",
    "hhh_alignment": BUILTIN_DATA_DIR / "hhh_alignment.jsonl",
    "hallucination_pairs": BUILTIN_DATA_DIR / "hallucination_pairs.jsonl",
    "pope_style": BUILTIN_DATA_DIR / "pope_style.jsonl",
    "sentiment_pairs": BUILTIN_DATA_DIR / "sentiment_pairs.jsonl",
}

DatasetKind = Literal["truthfulqa", "pairs", "probes"]
PAIR_KEYS = ("prompt", "chosen", "rejected")
PROBE_KEYS = ("image", "question", "answer")
TRUTHFULQA_KEYS = ("question", "mc1_choices", "mc1_label")
_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}


@dataclass(frozen=True)
class PreferenceExample:
    """A prompt with a preferred and a dispreferred response; `image` is an absolute path or None."""

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
    """A POPE-style object-presence probe: is `object` in the image? `answer` is 'yes' or 'no'."""

    image: str
    question: str
    answer: str
    object: str = ""


# ---------------------------------------------------------------- reading files


def _read_text(path: str | Path) -> tuple[Path, str]:
    """Read a dataset file as UTF-8 text, refusing missing files, folders, oversized and non-UTF-8 files."""
    p = Path(path)
    try:
        if not p.exists():
            raise DataError("the file does not exist", path=str(p))
        if p.is_dir():
            raise DataError("this is a folder, not a dataset file", path=str(p))
        if not p.is_file():
            raise DataError("this is not a regular file", path=str(p))
        size = p.stat().st_size
        if size > MAX_DATASET_BYTES:
            raise DataError(
                f"the file is {size / _MB:.1f} MB, larger than the {MAX_DATASET_BYTES / _MB:.0f} MB limit", path=str(p)
            )
        with p.open("rb") as fh:
            raw = fh.read(MAX_DATASET_BYTES + 1)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"the file could not be read ({exc.__class__.__name__})", path=str(p)) from None
    if len(raw) > MAX_DATASET_BYTES:
        raise DataError(f"the file is larger than the {MAX_DATASET_BYTES / _MB:.0f} MB limit", path=str(p))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError("the file is not valid UTF-8 text", line=line, path=str(p)) from None
    if not text.strip():
        raise DataError("the file has no rows", path=str(p))
    return p, text


def _iter_jsonl(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line, object) for each non-blank line; anything but a JSON object is a DataError."""
    # Split on "\n" only: str.splitlines() would also break at U+2028 and U+0085, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise DataError("this line is not valid JSON", line=number, path=where) from None
        if not isinstance(row, dict):
            hint = " (the file must hold one JSON object per line)" if isinstance(row, list) else ""
            raise DataError(f"a row must be a JSON object, got {_type_name(row)}{hint}", line=number, path=where)
        yield number, row


def _iter_csv(text: str, where: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line of the record's start, row dict) for each non-blank CSV record after the header."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"this CSV record is malformed ({exc})", line=start, path=where) from None
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            if any(not name for name in header):
                raise DataError("the header row has an empty column name", line=start, path=where)
            if len(set(header)) != len(header):
                raise DataError("the header row repeats a column name", line=start, path=where)
            continue
        if len(record) != len(header):
            raise DataError(
                f"this row has {len(record)} fields but the header has {len(header)}", line=start, path=where
            )
        yield start, dict(zip(header, record))


def _iter_rows(path: str | Path) -> tuple[Path, Iterator[tuple[int, dict[str, Any]]]]:
    """Open a dataset file and return its path and an iterator of (line, row dict)."""
    p, text = _read_text(path)
    delimiter = _CSV_SUFFIXES.get(p.suffix.lower())
    if delimiter is not None:
        return p, _iter_csv(text, str(p), delimiter)
    return p, _iter_jsonl(text, str(p))


def _check_window(limit: int | None, offset: int) -> None:
    """Refuse a limit below 1 or a negative offset (caller's mistake, not the file's)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a whole number of at least 1, got {limit!r}.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InputError(f"offset must be a whole number of at least 0, got {offset!r}.")


def _window(
    rows: Iterator[tuple[int, dict[str, Any]]], limit: int | None, offset: int, where: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield the rows offset .. offset + limit - 1 (skipped rows are not validated); no row at all is a DataError."""
    seen = 0
    for line, row in rows:
        if seen >= offset:
            yield line, row
        seen += 1
        if limit is not None and seen >= offset + limit:
            return  # stop before reading (and validating) further lines
    if seen == 0:
        raise DataError("the file has no rows", path=where)
    if seen <= offset:
        raise DataError(f"offset {offset} is past the last row (the file has {seen} rows)", path=where)


# ---------------------------------------------------------------- field checks


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    names |= {int: "a whole number", float: "a decimal number"}
    return names.get(type(value), type(value).__name__)


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
        raise DataError(f'"{key}" must be a string, got {_type_name(value)}', line=line, path=where)
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
        raise DataError(f'"{key}" must be a list of strings, got {_type_name(value)}', line=line, path=where)
    if len(value) < min_len:
        raise DataError(f'"{key}" must have at least {min_len} entries, got {len(value)}', line=line, path=where)
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f'every entry of "{key}" must be a non-empty string', line=line, path=where)
        _check_encodable(item, key, line, where)
    return tuple(value)


def _image_root(dataset: Path, image_root: str | Path | None) -> Path:
    """The folder image paths must stay inside: given, or the shipped assets for built-ins, or the file's folder."""
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


# ---------------------------------------------------------------- row parsers


def _parse_pair(row: dict[str, Any], line: int, where: str, base: Path, root: Path) -> PreferenceExample:
    prompt = _text(row, "prompt", line, where)
    chosen = _text(row, "chosen", line, where)
    rejected = _text(row, "rejected", line, where)
    if chosen.strip() == rejected.strip():
        raise DataError('"chosen" and "rejected" are the same answer', line=line, path=where)
    image_value = _text(row, "image", line, where, required=False)
    image = _resolve_image(image_value, root, base, line, where) if image_value.strip() else None
    meta = {k: v for k, v in row.items() if k not in (*PAIR_KEYS, "image")}
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, image=image, meta=meta)


def _parse_probe(row: dict[str, Any], line: int, where: str, base: Path, root: Path) -> YesNoProbe:
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
        raise DataError(f'"mc2_targets" must be an object with "choices" and "labels", got {_type_name(targets)}'
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


def _parse_truthfulqa(row: dict[str, Any], line: int, where: str) -> MCQuestion:
    question = _text(row, "question", line, where)
    choices = _text_list(row, "mc1_choices", line, where, min_len=2)
    if len(set(choices)) != len(choices):
        raise DataError('"mc1_choices" repeats a choice', line=line, path=where)
    label = row.get("mc1_label")
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataError(f'"mc1_label" must be a whole number, got {_type_name(label)}', line=line, path=where)
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


# ---------------------------------------------------------------- public loaders


def load_truthfulqa(path: str | Path, limit: int | None = None, offset: int = 0) -> list[MCQuestion]:
    """Load TruthfulQA multiple-choice questions (JSONL with question, mc1_choices, mc1_label, ...).

    `best_answer`, `correct_answers`, `incorrect_answers`, `category` and `mc2_targets` are optional; when present
    they are checked. Without them, the best answer is the MC1 true choice and the incorrect answers are the other
    choices; without `mc2_targets`, the MC2 answers are the correct then the incorrect answers (`mc2_source`
    "fallback").
    """
    _check_window(limit, offset)
    p, rows = _iter_rows(path)
    where = str(p)
    if p.suffix.lower() in _CSV_SUFFIXES:
        raise DataError("TruthfulQA-style questions (with lists of choices) must be a JSONL file", path=where)
    return [_parse_truthfulqa(row, line, where) for line, row in _window(rows, limit, offset, where)]


def truthfulqa_to_pairs(questions: list[MCQuestion]) -> list[PreferenceExample]:
    """Turn TruthfulQA questions into preference pairs as the GrAInS paper does.

    prompt = `Q: {question}\\nA:`, chosen = " " + best answer, rejected = " " + first incorrect answer. The leading
    space makes each answer tokenise as a continuation of `A:` (as a word after a space), not as a glued-on token.
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


def load_pairs(
    path: str | Path, limit: int | None = None, offset: int = 0, image_root: str | Path | None = None
) -> list[PreferenceExample]:
    """Load preference pairs from JSONL or CSV with columns prompt, chosen, rejected and optional image.

    Relative image paths resolve against the dataset file's folder; every image must exist and lie inside
    `image_root` (default: that folder; for the shipped datasets, the assets folder). Extra columns go to `meta`.
    """
    _check_window(limit, offset)
    p, rows = _iter_rows(path)
    where, base = str(p), p.resolve().parent
    root = _image_root(p, image_root)
    return [_parse_pair(row, line, where, base, root) for line, row in _window(rows, limit, offset, where)]


def load_probes(
    path: str | Path, limit: int | None = None, offset: int = 0, image_root: str | Path | None = None
) -> list[YesNoProbe]:
    """Load POPE-style probes (image, question, answer yes/no, optional object) from JSONL or CSV.

    Image paths follow the same rules as in `load_pairs`; the returned probes hold absolute image paths.
    """
    _check_window(limit, offset)
    p, rows = _iter_rows(path)
    where, base = str(p), p.resolve().parent
    root = _image_root(p, image_root)
    return [_parse_probe(row, line, where, base, root) for line, row in _window(rows, limit, offset, where)]


def detect_format(path: str | Path) -> DatasetKind:
    """Tell a dataset's kind ("truthfulqa", "pairs" or "probes") from the keys of its first row."""
    p, rows = _iter_rows(path)
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
    """Detect a dataset's kind and load it; returns (kind, rows)."""
    kind = detect_format(path)
    if kind == "truthfulqa":
        return kind, load_truthfulqa(path, limit=limit, offset=offset)
    if kind == "pairs":
        return kind, load_pairs(path, limit=limit, offset=offset, image_root=image_root)
    return kind, load_probes(path, limit=limit, offset=offset, image_root=image_root)


def load_builtin(name: str, limit: int | None = None, offset: int = 0) -> tuple[DatasetKind, list]:
    """Load one of BUILTIN_DATASETS by name; returns (kind, rows)."""
    if name not in BUILTIN_DATASETS:
        raise InputError(f"Unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}.")
    return load_any(BUILTIN_DATASETS[name], limit=limit, offset=offset)
