"""Tests for grains.data: loaders, validation errors with line numbers, path escapes, built-in datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grains import data
from grains.data import (
    BUILTIN_DATASETS,
    MCQuestion,
    PreferenceExample,
    YesNoProbe,
    detect_format,
    load_any,
    load_builtin,
    load_pairs,
    load_probes,
    load_truthfulqa,
    truthfulqa_to_pairs,
)
from grains.errors import DataError, InputError

PAIR = {"prompt": "Q: sky?\nA:", "chosen": " blue", "rejected": " green"}
TQA = {
    "question": "Is the sky blue?",
    "category": "Science",
    "best_answer": "Yes.",
    "correct_answers": ["Yes.", "Usually."],
    "incorrect_answers": ["No.", "It is green."],
    "mc1_choices": ["No.", "Yes.", "It is green."],
    "mc1_label": 1,
}


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_image(folder: Path, name: str = "cat.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder / name


def error_line(exc_info: pytest.ExceptionInfo) -> int | None:
    return exc_info.value.line


# ---------------------------------------------------------------- pairs


def test_load_pairs_jsonl_keeps_text_and_extra_fields(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIR, "", {**PAIR, "chosen": " azure", "subset": "honest"}])
    rows = load_pairs(path)
    assert [r.chosen for r in rows] == [" blue", " azure"]
    assert rows[0].prompt == "Q: sky?\nA:" and rows[0].rejected == " green" and rows[0].image is None
    assert rows[1].meta == {"subset": "honest"}


def test_load_pairs_csv_with_quoted_multiline_field_and_image(tmp_path):
    make_image(tmp_path / "imgs")
    path = tmp_path / "p.csv"
    path.write_text(
        'prompt,chosen,rejected,image\n"line one\nline two",yes,no,imgs/cat.jpg\nQ2,a,b,\n', encoding="utf-8"
    )
    rows = load_pairs(path)
    assert rows[0].prompt == "line one\nline two"
    assert rows[0].image == str((tmp_path / "imgs" / "cat.jpg").resolve())
    assert rows[1].image is None


def test_csv_error_line_counts_multiline_records(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,chosen,rejected\n"a\nb\nc",x,y\nq,same,same\n', encoding="utf-8")
    with pytest.raises(DataError, match="same answer") as exc:
        load_pairs(path)
    assert error_line(exc) == 5


def test_csv_malformed_quoting_is_an_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,chosen,rejected\nq,a,b\n"q"x,a,b\n', encoding="utf-8")
    with pytest.raises(DataError, match="malformed") as exc:
        load_pairs(path)
    assert error_line(exc) == 3


def test_tsv_is_read_with_tabs(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("prompt\tchosen\trejected\nq, with comma\ta\tb\n", encoding="utf-8")
    assert load_pairs(path)[0].prompt == "q, with comma"


def test_csv_wrong_field_count_and_missing_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,chosen,rejected\nq,a,b\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 fields but the header has 3") as exc:
        load_pairs(path)
    assert error_line(exc) == 3
    path.write_text("prompt,chosen\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match='no "rejected" field') as exc:
        load_pairs(path)
    assert error_line(exc) == 2


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({**PAIR, "prompt": ""}, '"prompt" is empty'),
        ({**PAIR, "chosen": "   "}, '"chosen" is empty'),
        ({**PAIR, "rejected": " blue"}, "same answer"),
        ({**PAIR, "prompt": 3}, '"prompt" must be a string, got a whole number'),
        ('{"prompt": ' + "[" * 50_000 + "]" * 50_000 + "}", "not valid JSON"),  # too deep for the parser
        ('{"prompt": ' + "9" * 5000 + "}", "not valid JSON"),  # longer than Python's int-digits limit
        ({**PAIR, "chosen": None}, '"chosen" must be a string, got null'),
        ({"prompt": "q", "chosen": "a"}, 'no "rejected" field'),
        ('{"prompt": "q", "chosen": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got a list"),
        ('"just a string"', "must be a JSON object, got a string"),
        ({**PAIR, "image": 5}, '"image" must be a string'),
        ({**PAIR, "prompt": "\ud800"}, "invalid Unicode"),
    ],
)
def test_pair_validation_errors_name_the_line(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIR, "", PAIR, bad_row, PAIR])
    with pytest.raises(DataError, match=message) as exc:
        load_pairs(path)
    assert error_line(exc) == 4
    assert str(path) in str(exc.value) and ":4:" in str(exc.value)


@pytest.mark.parametrize("escape", ["../secret.jpg", "../../etc/passwd", "/etc/passwd", "imgs/../../secret.jpg"])
def test_image_paths_that_leave_the_dataset_folder_are_refused(tmp_path, escape):
    make_image(tmp_path, "secret.jpg")
    folder = tmp_path / "ds"
    make_image(folder / "imgs")
    path = write_jsonl(folder / "p.jsonl", [{**PAIR, "image": "imgs/cat.jpg"}, {**PAIR, "image": escape}])
    with pytest.raises(DataError, match="outside the dataset folder") as exc:
        load_pairs(path)
    assert error_line(exc) == 2


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    secret = make_image(tmp_path, "secret.jpg")
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "link.jpg").symlink_to(secret)
    path = write_jsonl(folder / "p.jsonl", [{**PAIR, "image": "link.jpg"}])
    with pytest.raises(DataError, match="outside"):
        load_pairs(path)


def test_absolute_image_path_inside_folder_is_allowed_and_missing_image_is_refused(tmp_path):
    image = make_image(tmp_path / "imgs")
    path = write_jsonl(tmp_path / "p.jsonl", [{**PAIR, "image": str(image)}, {**PAIR, "image": "imgs/dog.jpg"}])
    with pytest.raises(DataError, match="does not exist") as exc:
        load_pairs(path)
    assert error_line(exc) == 2
    assert load_pairs(path, limit=1)[0].image == str(image.resolve())


def test_explicit_image_root_widens_the_allowed_folder(tmp_path):
    make_image(tmp_path / "images")
    (tmp_path / "data").mkdir()
    path = write_jsonl(tmp_path / "data" / "p.jsonl", [{**PAIR, "image": "../images/cat.jpg"}])
    with pytest.raises(DataError, match="outside"):
        load_pairs(path)
    assert load_pairs(path, image_root=tmp_path)[0].image == str((tmp_path / "images" / "cat.jpg").resolve())


def test_limit_and_offset(tmp_path):
    rows = [{**PAIR, "chosen": f" c{i}"} for i in range(5)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert [r.chosen for r in load_pairs(path, limit=2, offset=1)] == [" c1", " c2"]
    assert [r.chosen for r in load_pairs(path, offset=3)] == [" c3", " c4"]
    with pytest.raises(DataError, match="past the last row"):
        load_pairs(path, offset=5)
    for bad in ({"limit": 0}, {"limit": -1}, {"offset": -1}, {"limit": 1.5}, {"offset": True}):
        with pytest.raises(InputError):
            load_pairs(path, **bad)


def test_limit_stops_before_a_later_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PAIR, PAIR, "not json"])
    assert len(load_pairs(path, limit=2)) == 2
    with pytest.raises(DataError) as exc:
        load_pairs(path)
    assert error_line(exc) == 3


def test_unicode_line_separator_inside_a_string_does_not_split_the_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({**PAIR, "prompt": "a\u2028b\x85c"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_pairs(path)[0].prompt == "a\u2028b\x85c"


# ---------------------------------------------------------------- file-level errors


def test_file_level_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        load_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="folder"):
        load_pairs(tmp_path)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # must not block reading a pipe
        load_pairs(fifo)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="has no rows"):
        load_pairs(empty)
    header_only = tmp_path / "h.csv"
    header_only.write_text("prompt,chosen,rejected\n", encoding="utf-8")
    with pytest.raises(DataError, match="has no rows"):
        load_pairs(header_only)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(PAIR).encode() + b'\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataError, match="UTF-8") as exc:
        load_pairs(latin)
    assert error_line(exc) == 2
    big = write_jsonl(tmp_path / "big.jsonl", [PAIR] * 20)
    assert len(load_pairs(big)) == 20
    monkeypatch.setattr(data.files, "MAX_DATASET_BYTES", 100)
    with pytest.raises(DataError, match="larger than"):
        load_pairs(big)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffprompt,chosen,rejected\nq,a,b\n".encode())
    assert load_pairs(path)[0].prompt == "q"


def test_the_loader_never_unpickles(tmp_path):
    import pickle

    path = tmp_path / "p.jsonl"
    path.write_bytes(pickle.dumps([PAIR]))
    with pytest.raises(DataError):
        load_pairs(path)


# ---------------------------------------------------------------- TruthfulQA


def test_load_truthfulqa_fields_and_prompt(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [TQA])
    (q,) = load_truthfulqa(path)
    assert isinstance(q, MCQuestion)
    assert q.prompt == "Q: Is the sky blue?\nA:"
    assert q.choices[q.label] == "Yes." == q.best_answer
    assert q.incorrect_answers == ("No.", "It is green.") and q.category == "Science"


def test_truthfulqa_optional_fields_default_from_the_choices(tmp_path):
    row = {"question": "Q?", "mc1_choices": ["wrong", "right", "also wrong"], "mc1_label": 1}
    (q,) = load_truthfulqa(write_jsonl(tmp_path / "t.jsonl", [row]))
    assert q.best_answer == "right" and q.correct_answers == ("right",)
    assert q.incorrect_answers == ("wrong", "also wrong") and q.category == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"question": ""}, '"question" is empty'),
        ({"mc1_choices": ["only one"], "mc1_label": 0}, "at least 2 entries"),
        ({"mc1_choices": ["a", ""]}, "non-empty string"),
        ({"mc1_choices": "a, b"}, "must be a list"),
        ({"mc1_choices": ["a", "a"], "mc1_label": 0}, "repeats a choice"),
        ({"mc1_label": 3}, "outside 0..2"),
        ({"mc1_label": -1}, "outside 0..2"),
        ({"mc1_label": True}, "whole number"),
        ({"mc1_label": 1.0}, "whole number, got a decimal number"),
        ({"incorrect_answers": []}, "at least 1 entries"),
        ({"correct_answers": [1]}, "non-empty string"),
        ({"best_answer": 7}, "must be a string"),
    ],
)
def test_truthfulqa_validation_errors_name_the_line(tmp_path, change, message):
    path = write_jsonl(tmp_path / "t.jsonl", [TQA, {**TQA, **change}])
    with pytest.raises(DataError, match=message) as exc:
        load_truthfulqa(path)
    assert error_line(exc) == 2


def test_truthfulqa_from_csv_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("question,mc1_choices,mc1_label\nq,a,0\n", encoding="utf-8")
    with pytest.raises(DataError, match="JSONL"):
        load_truthfulqa(path)


def test_truthfulqa_to_pairs_uses_best_and_first_incorrect_with_leading_space(tmp_path):
    (q,) = load_truthfulqa(write_jsonl(tmp_path / "t.jsonl", [TQA]))
    (pair,) = truthfulqa_to_pairs([q])
    assert pair == PreferenceExample(prompt="Q: Is the sky blue?\nA:", chosen=" Yes.", rejected=" No.")
    same = MCQuestion("q", "Q: q\nA:", ("x", "y"), 0, ("x",), ("x",), "x", "")
    with pytest.raises(DataError, match="same best"):
        truthfulqa_to_pairs([same])


# ---------------------------------------------------------------- probes and detection


def test_load_probes_and_validation(tmp_path):
    make_image(tmp_path / "images")
    good = {"image": "images/cat.jpg", "question": "Is there a cat?", "answer": " Yes ", "object": "cat"}
    path = write_jsonl(tmp_path / "probes.jsonl", [good])
    (probe,) = load_probes(path)
    assert probe == YesNoProbe(str((tmp_path / "images/cat.jpg").resolve()), "Is there a cat?", "yes", "cat")
    for change, message in [
        ({"answer": "maybe"}, 'must be "yes" or "no"'),
        ({"image": "../x.jpg"}, "outside"),
        ({"image": ""}, '"image" is empty'),
        ({"image": "images/none.jpg"}, "does not exist"),
    ]:
        write_jsonl(path, [good, {**good, **change}])
        with pytest.raises(DataError, match=message) as exc:
            load_probes(path)
        assert error_line(exc) == 2


def test_detect_format_and_load_any(tmp_path):
    make_image(tmp_path)
    pairs = write_jsonl(tmp_path / "a.jsonl", [PAIR])
    tqa = write_jsonl(tmp_path / "b.jsonl", [TQA])
    probes = write_jsonl(tmp_path / "c.jsonl", [{"image": "cat.jpg", "question": "q", "answer": "no"}])
    csv_pairs = tmp_path / "d.csv"
    csv_pairs.write_text("prompt,chosen,rejected\nq,a,b\n", encoding="utf-8")
    assert [detect_format(p) for p in (pairs, tqa, probes, csv_pairs)] == ["pairs", "truthfulqa", "probes", "pairs"]
    kind, rows = load_any(tqa)
    assert kind == "truthfulqa" and isinstance(rows[0], MCQuestion)
    kind, rows = load_any(probes)
    assert kind == "probes" and rows[0].answer == "no"
    unknown = write_jsonl(tmp_path / "e.jsonl", ["", {"text": "hello"}])
    with pytest.raises(DataError, match="unknown dataset format") as exc:
        detect_format(unknown)
    assert error_line(exc) == 2


# ---------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize(
    ("name", "kind", "count"),
    [
        ("truthfulqa", "truthfulqa", 200),
        ("hhh_alignment", "pairs", 221),
        ("hallucination_pairs", "pairs", 300),
        ("pope_style", "probes", 36),
    ],
)
def test_builtin_datasets_load_with_expected_counts(name, kind, count):
    assert BUILTIN_DATASETS[name].is_file()
    got_kind, rows = load_builtin(name)
    assert (got_kind, len(rows)) == (kind, count)


def test_builtin_pope_images_exist_under_assets_images():
    probes = load_probes(BUILTIN_DATASETS["pope_style"])
    images = {Path(p.image) for p in probes}
    assert len(images) == 7
    assert all(img.is_file() and img.parent == data.ASSETS_DIR / "images" for img in images)
    assert {p.answer for p in probes} == {"yes", "no"}


def test_builtin_truthfulqa_labels_point_at_the_best_answer():
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"])
    assert all(q.choices[q.label] == q.best_answer for q in questions)
    pairs = truthfulqa_to_pairs(questions)
    assert len(pairs) == 200 and all(p.chosen.startswith(" ") and p.rejected.startswith(" ") for p in pairs)


def test_unknown_builtin_name():
    with pytest.raises(InputError, match="Unknown built-in dataset"):
        load_builtin("nope")
