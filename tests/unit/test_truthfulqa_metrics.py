"""TruthfulQA MC1/MC2: grains.truthfulqa_metrics against lm-evaluation-harness's own result processing, the loader's
MC2 targets (and the labelled fallback), the data conversion script, and MC2 through grains.evaluate."""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
from pathlib import Path

import lm_eval
import numpy as np
import pytest

from grains import truthfulqa_metrics as tqm
from grains.data import BUILTIN_DATASETS, load_truthfulqa
from grains.errors import DataError
from tests.factories import load_script

LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"  # lm-eval==0.4.13, pinned in requirements


# ---------------------------------------------------------------- lm-eval's own tasks, fed our log-likelihoods


def _lm_eval_task(yaml_name: str, docs: list[dict]):
    """The real `truthfulqa_mc1`/`truthfulqa_mc2` task of lm-eval 0.4.13, built from its packaged YAML, with the
    documents given here instead of a download (HF `truthful_qa/multiple_choice` layout)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    class LocalDocs(ConfigurableTask):
        def download(self, dataset_kwargs=None, **kwargs) -> None:
            self.dataset = datasets.DatasetDict({"validation": datasets.Dataset.from_list(docs)})

    return LocalDocs(config=load_yaml(LM_EVAL_TASKS / yaml_name))


def _doc(question: str, mc1_choices: list[str], mc2_choices: list[str], n_true: int) -> dict:
    return {"question": question,
            "mc1_targets": {"choices": mc1_choices, "labels": [1] + [0] * (len(mc1_choices) - 1)},
            "mc2_targets": {"choices": mc2_choices, "labels": [1] * n_true + [0] * (len(mc2_choices) - n_true)}}


@pytest.fixture(scope="module")
def lm_eval_tasks():
    doc = _doc("Is this a placeholder?", ["yes", "no"], ["yes", "no"], 1)
    return _lm_eval_task("truthfulqa_mc1.yaml", [doc]), _lm_eval_task("truthfulqa_mc2.yaml", [doc])


def lm_eval_mc2(logliks: list[float], n_true: int) -> float:
    """lm-eval's `process_results_mc2` itself."""
    from lm_eval.tasks.truthfulqa.utils import process_results_mc2

    doc = {"mc2_targets": {"labels": [1] * n_true + [0] * (len(logliks) - n_true)}}
    return float(process_results_mc2(doc, [(ll, False) for ll in logliks])["acc"])


def _random_case(rng: random.Random, n_max: int = 40, low: float = -80.0):
    n = rng.randint(2, n_max)
    n_true = rng.randint(1, n - 1)
    return [rng.uniform(low, 0.0) for _ in range(n)], n_true


def test_the_packaged_tasks_are_the_reference_ones(lm_eval_tasks):
    mc1_task, mc2_task = lm_eval_tasks
    from lm_eval.tasks.truthfulqa.utils import process_results_mc2

    assert mc1_task.config.task == "truthfulqa_mc1" and mc2_task.config.task == "truthfulqa_mc2"
    assert mc1_task.OUTPUT_TYPE == "multiple_choice" and mc1_task.config.process_results is None
    assert mc2_task.config.process_results is process_results_mc2
    doc = mc2_task.eval_docs[0]
    assert mc2_task.doc_to_choice(doc) == ["yes", "no"] and mc2_task.doc_to_target(doc) == 0


@pytest.mark.parametrize("seed", range(60))
def test_mc2_matches_lm_eval_on_random_logliks(seed, lm_eval_tasks):
    rng = random.Random(seed)
    logliks, n_true = _random_case(rng, n_max=40, low=-rng.choice([1.0, 20.0, 120.0]))
    labels = [1] * n_true + [0] * (len(logliks) - n_true)
    ours = tqm.mc2(logliks, labels)
    assert ours == pytest.approx(lm_eval_mc2(logliks, n_true), rel=1e-9, abs=1e-12)
    # ...and through lm-eval's truthfulqa_mc2 task end to end (its choices, its target, its process_results).
    _, mc2_task = lm_eval_tasks
    doc = _doc("q", ["a", "b"], [f"answer {i}" for i in range(len(logliks))], n_true)
    via_task = mc2_task.process_results(doc, [(ll, False) for ll in logliks])["acc"]
    assert ours == pytest.approx(float(via_task), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(60))
def test_mc1_matches_lm_eval_multiple_choice_acc(seed, lm_eval_tasks):
    rng = random.Random(1000 + seed)
    n = rng.randint(2, 15)
    # Coarse values make ties common, so the tie rule (first maximum) is exercised too.
    logliks = [float(rng.randint(-6, 0)) for _ in range(n)] if seed % 2 else [rng.uniform(-50, 0) for _ in range(n)]
    label = rng.randrange(n)
    from lm_eval.api.task import MultipleChoiceTask

    generic = MultipleChoiceTask.process_results(None, {"choices": [f"c{i}" for i in range(n)], "gold": label},
                                                 [(ll, False) for ll in logliks])["acc"]
    assert tqm.mc1(logliks, label) == generic
    # truthfulqa_mc1 lists the true choice first (target 0): reorder ours that way and ask the task itself.
    order = [label] + [i for i in range(n) if i != label]
    mc1_task, _ = lm_eval_tasks
    doc = _doc("q", [f"c{i}" for i in order], ["x", "y"], 1)
    via_task = mc1_task.process_results(doc, [(logliks[i], False) for i in order])["acc"]
    assert tqm.mc1([logliks[i] for i in order], 0) == via_task


def test_mc1_ties_go_to_the_first_maximum_as_numpy_argmax():
    assert tqm.mc1([-1.0, -1.0, -3.0], 0) == 1.0
    assert tqm.mc1([-1.0, -1.0, -3.0], 1) == 0.0
    assert tqm.mc1([-5.0, -0.1, -3.0], 1) == 1.0 and tqm.mc1([-5.0, -0.1, -3.0], 2) == 0.0


def test_mc2_hand_computed_values():
    # p = 0.2 (true), 0.6 (false): 0.2 / 0.8
    assert tqm.mc2([math.log(0.2), math.log(0.6)], [1, 0]) == pytest.approx(0.25, abs=1e-15)
    # all answers equally likely: the share of true answers
    assert tqm.mc2([-7.5] * 5, [1, 1, 0, 0, 0]) == pytest.approx(0.4, abs=1e-15)
    # not length-normalised: a long true answer (-30 summed) loses to a short false one (-3)
    assert tqm.mc2([-30.0, -3.0], [1, 0]) == pytest.approx(1 / (1 + math.exp(27.0)), rel=1e-12)
    # -inf is probability 0
    assert tqm.mc2([-math.inf, -1.0, -2.0], [1, 1, 0]) == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-12)


def test_mc2_large_negative_logliks_are_safe_where_lm_eval_underflows():
    logliks, n_true = [-1200.0, -1201.5, -1199.0, -1250.0], 2
    labels = [1, 1, 0, 0]
    with np.errstate(invalid="ignore"):
        assert math.isnan(lm_eval_mc2(logliks, n_true))  # exp underflows to 0/0 in lm-eval
    shifted = [v - max(logliks) for v in logliks]  # MC2 is unchanged by a common shift; lm-eval is exact here
    ours = tqm.mc2(logliks, labels)
    assert ours == pytest.approx(lm_eval_mc2(shifted, n_true), rel=1e-12)
    assert 0.0 < ours < 1.0
    # one answer in range, the rest far below: both agree (the far ones contribute exactly 0)
    mixed = [-4.0, -900.0, -2.0, -1000.0, -3.0]
    assert tqm.mc2(mixed, [1, 1, 0, 0, 0]) == pytest.approx(lm_eval_mc2(mixed, 2), rel=1e-12)


def test_mc2_many_answers():
    rng = random.Random(7)
    logliks = [rng.uniform(-400.0, -300.0) for _ in range(500)]
    labels = [1] * 137 + [0] * 363
    shifted = [v - max(logliks) for v in logliks]
    assert tqm.mc2(logliks, labels) == pytest.approx(lm_eval_mc2(shifted, 137), rel=1e-10)
    small = [rng.uniform(-20.0, 0.0) for _ in range(500)]
    assert tqm.mc2(small, labels) == pytest.approx(lm_eval_mc2(small, 137), rel=1e-10)


def test_length_normalised_variants_are_separate_and_per_token():
    sums, counts = [-12.0, -4.0, -9.0], [6, 1, 3]  # per token: -2, -4, -3
    assert tqm.mc1(sums, 1) == 1.0 and tqm.mc1_length_normalized(sums, counts, 0) == 1.0
    per_token = [-2.0, -4.0, -3.0]
    assert tqm.mc2_length_normalized(sums, counts, [1, 0, 0]) == pytest.approx(tqm.mc2(per_token, [1, 0, 0]))
    assert tqm.mc2_length_normalized(sums, counts, [1, 0, 0]) > 0.5 > tqm.mc2(sums, [1, 0, 0])


@pytest.mark.parametrize(("logliks", "labels", "match"), [
    ([-1.0, -2.0], [0, 1], "true answers"),
    ([-1.0, -2.0, -3.0], [1, 0, 1], "true answers"),
    ([-1.0, -2.0], [1, 1], "at least one true"),
    ([-1.0, -2.0], [0, 0], "at least one true"),
    ([-1.0, -2.0], [1, 2], "0 or 1"),
    ([-1.0, -2.0], [True, False], "0 or 1"),
    ([-1.0, -2.0, -3.0], [1, 0], "3 log-likelihoods for 2 labels"),
    ([-1.0, float("nan")], [1, 0], "finite"),
    ([-1.0, math.inf], [1, 0], "finite"),
    ([-math.inf, -math.inf], [1, 0], "undefined"),
])
def test_mc2_refuses_what_it_cannot_score(logliks, labels, match):
    with pytest.raises(ValueError, match=match):
        tqm.mc2(logliks, labels)


def test_mc1_refuses_a_bad_label():
    for label in (-1, 3, True, 1.0):
        with pytest.raises(ValueError, match="index"):
            tqm.mc1([-1.0, -2.0, -3.0], label)
    with pytest.raises(ValueError, match="empty"):
        tqm.mc1([], 0)


# ---------------------------------------------------------------- loader: mc2_targets and the fallback

ROW = {"question": "Is the sky blue?", "best_answer": "Yes.", "correct_answers": ["Yes.", "Usually."],
       "incorrect_answers": ["No.", "It is green."], "mc1_choices": ["No.", "Yes.", "It is green."], "mc1_label": 1}
TARGETS = {"choices": ["Yes.", "On clear days.", "No.", "It is green.", "It is red."], "labels": [1, 1, 0, 0, 0]}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loader_reads_mc2_targets_and_labels_the_fallback(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{**ROW, "mc2_targets": TARGETS}, ROW])
    with_targets, fallback = load_truthfulqa(path)
    assert with_targets.mc2_source == "mc2_targets"
    assert with_targets.mc2_choices == tuple(TARGETS["choices"]) and with_targets.mc2_labels == (1, 1, 0, 0, 0)
    assert fallback.mc2_source == "fallback"
    assert fallback.mc2_choices == ("Yes.", "Usually.", "No.", "It is green.")
    assert fallback.mc2_labels == (1, 1, 0, 0)
    minimal = {k: ROW[k] for k in ("question", "mc1_choices", "mc1_label")}
    (only_mc1,) = load_truthfulqa(_write(tmp_path / "m.jsonl", [minimal]))
    assert only_mc1.mc2_choices == ("Yes.", "No.", "It is green.") and only_mc1.mc2_labels == (1, 0, 0)


@pytest.mark.parametrize(("targets", "match"), [
    (["Yes.", "No."], '"mc2_targets" must be an object with "choices" and "labels", got a list'),
    ({"choices": ["Yes.", "No."]}, "must be an object with \"choices\" and \"labels\", got an object with other"),
    ({"choices": ["Yes.", "No."], "labels": [1, 0], "extra": 1}, "other keys"),
    ({"choices": "Yes.; No.", "labels": [1, 0]}, '"mc2_targets.choices" must be a list of strings'),
    ({"choices": ["Yes."], "labels": [1]}, '"mc2_targets.choices" must have at least 2 entries'),
    ({"choices": ["Yes.", ""], "labels": [1, 0]}, "non-empty string"),
    ({"choices": ["Yes.", "Yes."], "labels": [1, 0]}, "repeats a choice"),
    ({"choices": ["Yes.", "No."], "labels": [1]}, "list of 2 labels"),
    ({"choices": ["Yes.", "No."], "labels": "10"}, "list of 2 labels"),
    ({"choices": ["Yes.", "No."], "labels": [1, 2]}, "0 or 1"),
    ({"choices": ["Yes.", "No.", "Maybe."], "labels": [0, 1, 0]}, "true answers .1. first"),
    ({"choices": ["Yes.", "No."], "labels": [1, 1]}, "at least one true"),
])
def test_loader_refuses_malformed_mc2_targets_with_the_line(tmp_path, targets, match):
    path = _write(tmp_path / "bad.jsonl", [ROW, {**ROW, "mc2_targets": targets}])
    with pytest.raises(DataError, match=match) as info:
        load_truthfulqa(path)
    assert info.value.line == 2 and info.value.path == str(path)


def test_shipped_truthfulqa_has_mc2_targets_for_every_row():
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"])
    assert len(questions) == 200 and {q.mc2_source for q in questions} == {"mc2_targets"}
    for q in questions:  # BIG-bench's MC2 set: the true answers, then the false ones
        assert q.mc2_choices == q.correct_answers + q.incorrect_answers
        assert q.mc2_labels == (1,) * len(q.correct_answers) + (0,) * len(q.incorrect_answers)
        assert q.choices[q.label] in q.mc2_choices[: len(q.correct_answers)]


# ---------------------------------------------------------------- the conversion script, on a tiny fake sdist


def _fake_sdist(path: Path, questions: list[dict], mc: list[dict]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (("questions.json", {"examples": questions}), ("task_mc.json", {"examples": mc})):
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/truthful_qa/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_conversion_script_adds_targets_reports_misses_and_is_idempotent(tmp_path, capsys):
    script = load_script("add_truthfulqa_mc2_targets")
    bb_q = {"Question": ROW["question"], "Category": "", "Best answer": "Yes.", "True answers": ["Yes.", "Usually."],
            "False answers": ["No.", "It is green."]}
    bb_mc = {"input": ROW["question"], "target_scores": {"Yes.": 1, "No.": 0, "It is green.": 0}}
    sdist = _fake_sdist(tmp_path / "bigbench-1.0.0.tar.gz", [bb_q], [bb_mc])
    data = _write(tmp_path / "t.jsonl", [ROW])
    assert script.main([str(sdist), "--data", str(data), "--check"]) == 1
    assert script.main([str(sdist), "--data", str(data)]) == 0
    (row,) = [json.loads(line) for line in data.read_text().splitlines()]
    assert row["mc2_targets"] == {"choices": ["Yes.", "Usually.", "No.", "It is green."], "labels": [1, 1, 0, 0]}
    before = data.read_bytes()
    assert script.main([str(sdist), "--data", str(data)]) == 0 and data.read_bytes() == before
    assert script.main([str(sdist), "--data", str(data), "--check"]) == 0
    unmatched = _write(tmp_path / "u.jsonl", [ROW, {**ROW, "question": "Not in BIG-bench?"}])
    original = unmatched.read_bytes()
    assert script.main([str(sdist), "--data", str(unmatched)]) == 1
    assert "row 2: question not found" in capsys.readouterr().err and unmatched.read_bytes() == original


# ---------------------------------------------------------------- through grains.evaluate on a tiny model


def test_evaluate_reports_reference_mc2_on_recomputed_logliks(tmp_path):
    from grains import evaluate, load_model
    from grains.scoring import response_logprobs

    shipped = [json.loads(line) for line in BUILTIN_DATASETS["truthfulqa"].read_text().splitlines()[:3]]
    fallback_row = {k: v for k, v in shipped[0].items() if k != "mc2_targets"}
    fallback_row["question"] = "Is this question without MC2 targets?"
    rows = load_truthfulqa(_write(tmp_path / "t.jsonl", [*shipped, fallback_row]))
    lm = load_model("tiny-random-llama")

    result = evaluate(lm, rows, "truthfulqa").to_dict()
    expected_mc2, expected_mc2_ln, expected_mc1 = [], [], []
    for q in rows:
        enc = lm.encode_prompt(q.prompt)
        sums, counts = response_logprobs(lm, enc, list(q.mc2_choices))
        expected_mc2.append(tqm.mc2(sums, q.mc2_labels))
        expected_mc2_ln.append(tqm.mc2_length_normalized(sums, counts, q.mc2_labels))
        n_true = q.mc2_labels.index(0)
        assert expected_mc2[-1] == pytest.approx(lm_eval_mc2(sums, n_true), rel=1e-9)
        choice_sums, _ = response_logprobs(lm, enc, list(q.choices))
        expected_mc1.append(tqm.mc1(choice_sums, q.label))
    assert result["mc2"] == pytest.approx(sum(expected_mc2) / len(rows), rel=1e-5)
    assert result["mc1"] == pytest.approx(sum(expected_mc1) / len(rows))
    assert 0.0 < result["mc2"] < 1.0
    assert result["mc2_answer_set"] == "fallback (correct_answers + incorrect_answers, no mc2_targets) for 1 of 4 " \
                                       "questions"
    assert not any("length_normalized" in key for key in result)

    normalised = evaluate(lm, rows, "truthfulqa", length_normalize=True).to_dict()
    assert normalised["mc2"] == pytest.approx(result["mc2"], rel=1e-9)  # "mc2" stays the reference MC2
    assert normalised["mc1"] == pytest.approx(result["mc1"])
    assert normalised["mc2_length_normalized"] == pytest.approx(sum(expected_mc2_ln) / len(rows), rel=1e-5)
    assert normalised["mc2_length_normalized"] != pytest.approx(normalised["mc2"], rel=1e-3)
    assert "mc1_length_normalized" in normalised and "mc2_length_normalized_unsteered" in normalised


def test_a_question_built_without_mc2_targets_gets_the_labelled_fallback():
    from grains.data import MCQuestion

    q = MCQuestion(question="q", prompt="Q: q\nA:", choices=("a", "b"), label=0, correct_answers=("a", "a2"),
                   incorrect_answers=("b",), best_answer="a")
    assert (q.mc2_choices, q.mc2_labels, q.mc2_source) == (("a", "a2", "b"), (1, 1, 0), "fallback")
    given = MCQuestion(question="q", prompt="Q: q\nA:", choices=("a", "b"), label=0, correct_answers=("a",),
                       incorrect_answers=("b",), best_answer="a", mc2_choices=("x", "y"), mc2_labels=(1, 0),
                       mc2_source="mc2_targets")
    assert (given.mc2_choices, given.mc2_labels, given.mc2_source) == (("x", "y"), (1, 0), "mc2_targets")
