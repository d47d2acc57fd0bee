"""Reading dataset files: UTF-8 text with a size cap, JSONL and CSV/TSV rows with 1-based line numbers, and the
limit/offset window. Only JSON and CSV are parsed, never pickle; every problem raises DataError naming the file and
line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grains.errors import DataError, InputError

MAX_DATASET_BYTES = 20 * 1024 * 1024
_MB = 1024 * 1024
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def type_name(value: Any) -> str:
    """How a JSON value's type reads in an error message.

    Args:
        value: a parsed JSON value.

    Returns:
        "an object", "a list", "a string", "true/false", "null", "a whole number", "a decimal number" or the type name.

    Example:
        >>> type_name([1]), type_name(None)
        ('a list', 'null')
    """
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    names |= {int: "a whole number", float: "a decimal number"}
    return names.get(type(value), type(value).__name__)


def read_text(path: str | Path) -> tuple[Path, str]:
    """Read a dataset file as UTF-8 text, refusing missing files, folders, oversized and non-UTF-8 files.

    Args:
        path: the dataset file.

    Returns:
        (the path, its text); a missing, oversized, non-UTF-8 or empty file raises DataError.

    Example:
        >>> path, text = read_text("assets/data/truthfulqa.jsonl")
    """
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


def iter_jsonl(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line, object) for each non-blank line; anything but a JSON object is a DataError.

    Args:
        text: the file's text.
        where: the file's name, for messages.

    Returns:
        An iterator of (line, row).

    Example:
        >>> list(iter_jsonl('{"a": 1}\n\n{"b": 2}', "x.jsonl"))
        [(1, {'a': 1}), (3, {'b': 2})]
    """
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
            raise DataError(f"a row must be a JSON object, got {type_name(row)}{hint}", line=number, path=where)
        yield number, row


def iter_csv(text: str, where: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line of the record's start, row dict) for each non-blank CSV record after the header.

    Args:
        text: the file's text.
        where: the file's name, for messages.
        delimiter: "," or a tab.

    Returns:
        An iterator of (line, row) with the header's keys.

    Example:
        >>> list(iter_csv("prompt,chosen\nhi,yo\n", "x.csv", ","))
        [(2, {'prompt': 'hi', 'chosen': 'yo'})]
    """
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


def iter_rows(path: str | Path) -> tuple[Path, Iterator[tuple[int, dict[str, Any]]]]:
    """Open a dataset file and return its path and an iterator of (line, row dict).

    Args:
        path: a .jsonl, .csv or .tsv file.

    Returns:
        (the path, an iterator of (line, row)).

    Example:
        >>> path, rows = iter_rows("assets/data/sentiment_pairs.jsonl")
        >>> next(rows)[0]
        1
    """
    p, text = read_text(path)
    delimiter = CSV_SUFFIXES.get(p.suffix.lower())
    if delimiter is not None:
        return p, iter_csv(text, str(p), delimiter)
    return p, iter_jsonl(text, str(p))


def check_window(limit: int | None, offset: int) -> None:
    """Refuse a limit below 1 or a negative offset (caller's mistake, not the file's).

    Args:
        limit: at most this many rows, or None.
        offset: rows to skip.

    Returns:
        None; a bad value raises InputError.

    Example:
        >>> check_window(0, 0)
        Traceback (most recent call last):
        InputError: limit must be a whole number of at least 1, got 0.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a whole number of at least 1, got {limit!r}.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InputError(f"offset must be a whole number of at least 0, got {offset!r}.")


def window_rows(
    rows: Iterator[tuple[int, dict[str, Any]]], limit: int | None, offset: int, where: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield the rows offset .. offset + limit - 1 (skipped rows are not validated); no row at all is a DataError.

    Args:
        rows: (line, row) pairs.
        limit: at most this many rows, or None.
        offset: rows to skip.
        where: the file's name, for messages.

    Returns:
        An iterator over the window.

    Example:
        >>> list(window_rows(iter([(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3})]), 1, 1, "x"))
        [(2, {'a': 2})]
    """
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
