"""Fuzz the dataset loaders: any file content gives valid rows or a DataError, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grains.data import (
    MCQuestion,
    PreferenceExample,
    YesNoProbe,
    detect_format,
    load_any,
    load_pairs,
    load_probes,
    load_truthfulqa,
)
from grains.errors import DataError

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOADERS = (load_pairs, load_truthfulqa, load_probes)
SUFFIXES = (".jsonl", ".csv")

KEYS = st.sampled_from(
    [
        "prompt",
        "chosen",
        "rejected",
        "image",
        "question",
        "answer",
        "object",
        "mc1_choices",
        "mc1_label",
        "best_answer",
        "correct_answers",
        "incorrect_answers",
        "category",
        "x",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ROWS = st.dictionaries(
    KEYS, JSON_VALUES | st.text(max_size=20) | st.lists(st.text(max_size=10), max_size=4), max_size=8
)


def check_valid(rows: list, kind: str | None = None) -> None:
    """Whatever a loader returns must be well-formed rows."""
    assert rows, "a loader must not return an empty list"
    for row in rows:
        if isinstance(row, PreferenceExample):
            assert row.prompt.strip() and row.chosen.strip() and row.rejected.strip()
            assert row.chosen.strip() != row.rejected.strip()
            assert row.image is None or Path(row.image).is_file()
        elif isinstance(row, MCQuestion):
            assert len(row.choices) >= 2 and 0 <= row.label < len(row.choices) and row.question.strip()
            assert row.incorrect_answers and all(isinstance(c, str) and c.strip() for c in row.choices)
        elif isinstance(row, YesNoProbe):
            assert row.answer in ("yes", "no") and Path(row.image).is_file()
        else:
            raise AssertionError(f"unexpected row type {type(row)}")


def run_all_loaders(path: Path) -> None:
    for loader in LOADERS:
        try:
            check_valid(loader(path))
        except DataError:
            pass
    try:
        kind = detect_format(path)
        assert kind in ("truthfulqa", "pairs", "probes")
        got_kind, rows = load_any(path)
        assert got_kind == kind
        check_valid(rows)
    except DataError:
        pass


def write_and_run(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "pic.jpg").write_bytes(b"\xff\xd8")
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        run_all_loaders(path)


@FUZZ
@given(content=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_arbitrary_bytes(content, suffix):
    write_and_run(content, suffix)


@FUZZ
@given(rows=st.lists(ROWS | JSON_VALUES, min_size=0, max_size=4))
def test_arbitrary_json_rows(rows):
    write_and_run("\n".join(json.dumps(r) for r in rows).encode(), ".jsonl")


@FUZZ
@given(
    header=st.lists(KEYS, min_size=1, max_size=6),
    cells=st.lists(
        st.lists(st.text(max_size=12) | st.sampled_from(["pic.jpg", "yes", "no", "../x"]), max_size=6), max_size=4
    ),
)
def test_arbitrary_csv(header, cells):
    lines = [",".join(header)] + [",".join(json.dumps(c) if "," in c or '"' in c else c for c in row) for row in cells]
    write_and_run("\n".join(lines).encode("utf-8", "surrogatepass"), ".csv")


@FUZZ
@given(
    prompt=st.text(min_size=1, max_size=30),
    chosen=st.text(min_size=1, max_size=30),
    rejected=st.text(min_size=1, max_size=30),
    image=st.none() | st.sampled_from(["pic.jpg", "./pic.jpg", "../pic.jpg", "/etc/passwd", "", "a\x00b"]),
)
def test_nearly_valid_pairs(prompt, chosen, rejected, image):
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "image": image}
    write_and_run((json.dumps(row) + "\n").encode(), ".jsonl")
    texts = (prompt, chosen, rejected)
    should_load = (
        all(t.strip() for t in texts)
        and chosen.strip() != rejected.strip()
        and not any(0xD800 <= ord(ch) <= 0xDFFF for t in texts for ch in t)
        and image in (None, "", "pic.jpg", "./pic.jpg")
    )
    if should_load:  # a valid row must not be refused
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "pic.jpg").write_bytes(b"\xff\xd8")
            path = Path(folder) / "data.jsonl"
            path.write_text(json.dumps(row) + "\n", encoding="utf-8")
            (got,) = load_pairs(path)
            assert (got.prompt, got.chosen, got.rejected) == texts
            assert (got.image is None) == (not image)
