"""Evaluation entry points: POPE probes with a VLM, TruthfulQA MC through the CLI in-process, bad kinds."""

import json

import pytest

from grains.cli import main
from grains.data import BUILTIN_DATASETS, load_probes
from grains.errors import InputError
from grains.evaluation import evaluate
from grains.models import load_model


def test_probes_give_pope_metrics_consistent_with_items():
    lm = load_model("tiny-random-llava")
    probes = load_probes(BUILTIN_DATASETS["pope_style"], limit=6)
    result = evaluate(lm, probes, "probes", per_item=True).to_dict()
    assert {"n", "accuracy", "precision", "recall", "f1", "yes_ratio"} <= set(result)
    items = result["items"]
    said_yes = sum(i["answer"] == "yes" for i in items)
    assert result["yes_ratio"] == pytest.approx(said_yes / len(items))
    assert result["accuracy"] == pytest.approx(sum(i["correct"] for i in items) / len(items))


def test_cli_eval_on_probes_with_a_vlm(capsys):
    code = main(["eval", "--model", "tiny-random-llava", "--data", "pope_style", "--limit", "4", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 4 and {"accuracy", "precision", "recall", "f1", "yes_ratio", "p_value"} <= set(data)


def test_unknown_kind_and_empty_rows():
    lm = load_model("tiny-random-llama")
    with pytest.raises(InputError, match="kind"):
        evaluate(lm, [object()], "essay")
    with pytest.raises(InputError, match="no rows"):
        evaluate(lm, [], "pairs")
