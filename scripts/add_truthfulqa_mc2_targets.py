"""Add TruthfulQA's MC2 answer set (`mc2_targets`) to the shipped truthfulqa.jsonl, from the BIG-bench sdist.

Reproduce (the script reads a local copy of the sdist; it downloads nothing itself):

    pip download --no-deps --no-binary :all: bigbench==1.0.0 -d /tmp/bb
    python scripts/add_truthfulqa_mc2_targets.py /tmp/bb/bigbench-1.0.0.tar.gz

Where the MC2 set comes from: BIG-bench's `truthful_qa` task (written with TruthfulQA's authors) keeps each
question's reference answers in `questions.json` ("True answers", "False answers"), and its `task.py` scores MC2
("correct_prob_mass") as the probability mass on the true answers, normalised over true + false answers. The MC2
targets are therefore those answers, true ones first: labels 1 for "True answers", then 0 for "False answers" (the
layout of `mc2_targets` in lm-evaluation-harness's `truthfulqa_mc2`). `task_mc.json` in the same folder holds only
the MC1 targets (best answer vs. false answers); it is used here to cross-check each row's MC1 choices.

Rows are matched to BIG-bench questions by exact question text. Every row must match (the script lists the ones
that do not and writes nothing); the file is rewritten only if something changed, so a second run is a no-op.
Exit status: 0 when the file is (or already was) up to date, 1 on any mismatch or unreadable input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "assets" / "data" / "truthfulqa.jsonl"
TASK_DIR = "bigbench/benchmark_tasks/truthful_qa/"


def _read_member(archive: Path, name: str) -> Any:
    """The JSON content of `<top folder>/bigbench/benchmark_tasks/truthful_qa/<name>` inside the sdist."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if member.isfile() and len(parts) == 2 and parts[1] == TASK_DIR + name:
                handle = tar.extractfile(member)
                if handle is None:
                    break
                return json.loads(handle.read().decode("utf-8"))
    raise SystemExit(f"error: {archive} has no {TASK_DIR}{name} (is this the bigbench==1.0.0 sdist?)")


def _by_text(examples: list[dict[str, Any]], key: str, what: str) -> dict[str, dict[str, Any]]:
    """Index examples by their question text; a repeated question would make matching ambiguous."""
    index: dict[str, dict[str, Any]] = {}
    for example in examples:
        text = example[key]
        if text in index:
            raise SystemExit(f"error: {what} repeats the question {text[:80]!r}")
        index[text] = example
    return index


def mc2_targets(example: dict[str, Any]) -> dict[str, list]:
    """TruthfulQA MC2 targets of one BIG-bench question: its true answers (label 1), then its false ones (0).

    Args:
        example: one entry of BIG-bench truthful_qa `questions.json` ("True answers", "False answers", ...).

    Returns:
        {"choices": [...], "labels": [...]} with the true answers first.
    """
    true, false = list(example["True answers"]), list(example["False answers"])
    if not true or not false:
        raise ValueError(f"question {example['Question'][:80]!r} needs at least one true and one false answer")
    if len(set(true + false)) != len(true) + len(false):
        raise ValueError(f"question {example['Question'][:80]!r} repeats an answer")
    return {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)}


def convert(rows: list[dict[str, Any]], questions: list[dict[str, Any]],
            mc1_examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with `mc2_targets` added, and a list of problems (unmatched questions, MC1 disagreements).

    Args:
        rows: the dataset's rows (question, mc1_choices, mc1_label, correct_answers, incorrect_answers, ...).
        questions: BIG-bench `questions.json` examples.
        mc1_examples: BIG-bench `task_mc.json` examples (input, target_scores), used to cross-check MC1.

    Returns:
        (new rows, problems); the rows are only meaningful when `problems` is empty.
    """
    by_question = _by_text(questions, "Question", "questions.json")
    by_input = _by_text(mc1_examples, "input", "task_mc.json")
    problems: list[str] = []
    out = []
    for number, row in enumerate(rows, start=1):
        text = row.get("question")
        example = by_question.get(text)
        if example is None:
            problems.append(f"row {number}: question not found in questions.json: {str(text)[:80]!r}")
            out.append(row)
            continue
        targets = mc2_targets(example)
        if row.get("correct_answers", example["True answers"]) != example["True answers"] or \
                row.get("incorrect_answers", example["False answers"]) != example["False answers"]:
            problems.append(f"row {number}: correct/incorrect answers differ from questions.json")
        mc1 = by_input.get(text)
        if mc1 is None:
            problems.append(f"row {number}: question not found in task_mc.json")
        else:
            scores = mc1["target_scores"]
            true_mc1 = [choice for choice, score in scores.items() if score == 1]
            choices = row.get("mc1_choices", [])
            label = row.get("mc1_label")
            if sorted(choices) != sorted(scores) or len(true_mc1) != 1 or not isinstance(label, int) or \
                    not 0 <= label < len(choices) or choices[label] != true_mc1[0]:
                problems.append(f"row {number}: mc1_choices/mc1_label disagree with task_mc.json")
        out.append({**{k: v for k, v in row.items() if k != "mc2_targets"}, "mc2_targets": targets})
    return out, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", type=Path, help="path to bigbench-1.0.0.tar.gz (the PyPI sdist)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the JSONL file to update in place")
    parser.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    args = parser.parse_args(argv)
    if not args.sdist.is_file():
        print(f"error: {args.sdist} is not a file", file=sys.stderr)
        return 1
    digest = hashlib.sha256(args.sdist.read_bytes()).hexdigest()
    questions = _read_member(args.sdist, "questions.json")["examples"]
    mc1_examples = _read_member(args.sdist, "task_mc.json")["examples"]
    text = args.data.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    new_rows, problems = convert(rows, questions, mc1_examples)
    print(f"sdist sha256 {digest}; {len(questions)} BIG-bench questions; {len(rows)} rows in {args.data}")
    if problems:
        print(f"{len(problems)} problem(s); nothing written:", file=sys.stderr)
        for problem in problems:
            print("  " + problem, file=sys.stderr)
        return 1
    new_text = "".join(json.dumps(row) + "\n" for row in new_rows)
    sizes = [len(r["mc2_targets"]["choices"]) for r in new_rows]
    print(f"all {len(rows)} rows matched; MC2 answers per question: {min(sizes)}-{max(sizes)} "
          f"(mean {sum(sizes) / len(sizes):.1f})")
    if new_text == text:
        print("already up to date")
        return 0
    if args.check:
        print("out of date: run without --check to write it", file=sys.stderr)
        return 1
    args.data.write_text(new_text, encoding="utf-8")
    print(f"wrote {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
