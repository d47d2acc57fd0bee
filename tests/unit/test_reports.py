"""Results render and serialise themselves: attribution, build, evaluation and sweep on a tiny random model."""

import json
import math

import pytest

import grains
from grains.attribution import AttributionResult
from grains.build import build_vector
from grains.data import PreferenceExample
from grains.evaluation import evaluate, sweep
from grains.reports import EvaluationReport, SweepResult

PAIRS = [
    PreferenceExample("What is the capital of France?", " Paris.", " London."),
    PreferenceExample("Is the sky blue?", " Yes it is.", " No, it is green."),
    PreferenceExample("Which animal barks?", " A dog.", " A fish."),
    PreferenceExample("Is fire hot?", " Yes.", " No."),
]


@pytest.fixture(scope="module")
def built(lm):
    return build_vector(lm, PAIRS, method="caa", select=False)


def test_attribution_renders_and_round_trips(lm, tmp_path):
    result = grains.attribute(lm, "The <b>movie</b> was", " great", " awful", steps=8, tolerance=None)
    page = result._repr_html_()
    assert page.count('class="grains-heatmap"') == 3  # prompt, s+ and s-
    assert "&lt;" in page and "<b>movie" not in page  # user text is escaped
    assert ("not converged" in page) != result.converged
    text = result.to_json(tmp_path / "a.json")
    again = AttributionResult.from_json(tmp_path / "a.json")
    assert again == result and AttributionResult.from_json(text) == result
    assert json.loads(text)["converged"] == result.converged
    assert math.isclose(json.loads(text)["relative_delta"], result.relative_delta)
    assert "delta" in result.to_text() and result.tokens[1] in "".join(result.tokens)


def test_show_prints_text_outside_a_notebook(lm, capsys):
    result = grains.attribute(lm, "The movie was", " great", " awful", steps=8, tolerance=None)
    result.show()
    out = capsys.readouterr().out
    assert "f(x) - f(x')" in out and ("NOT converged" in out) == (result.convergence == "not converged")


def test_evaluation_report_round_trips_and_keeps_the_flat_json(lm, built):
    report = evaluate(lm, PAIRS, "pairs", built.vector, layer=1, strength=1.0, per_item=True)
    assert isinstance(report, EvaluationReport) and report.steered
    flat = report.to_dict()
    assert flat["accuracy"] == report.accuracy and flat["accuracy_unsteered"] == report.accuracy_unsteered
    assert flat["margin_unsteered"] == report.metrics_unsteered["margin"] and flat["layer"] == [1]
    assert EvaluationReport.from_json(report.to_json()) == report
    page = report._repr_html_()
    assert "McNemar" in page and f"n = {len(PAIRS)}" in page and page.count("<tr>") >= 2 + len(PAIRS)
    unsteered = evaluate(lm, PAIRS, "pairs")
    assert not unsteered.steered and "layer" not in unsteered.to_dict()
    assert unsteered.accuracy == unsteered.accuracy_unsteered


def test_sweep_result_renders_best_of_n_and_round_trips(lm, built):
    result = sweep(lm, PAIRS, "pairs", built.vector, layers=[0, 1], strengths=[0.0, 1.0])
    assert isinstance(result, SweepResult) and result.cells_tested == 2  # strength 0 is not a tested cell
    assert SweepResult.from_json(result.to_json()) == result
    page = result.to_html()
    assert "best of 2" in page and "not an estimate" in page and page.count("<tr>") == 3
    assert "best of 2" in result.to_text()


def test_build_result_renders_its_card(built):
    page = built._repr_html_()
    assert "caa" in page and "Steering vector" in page
    data = json.loads(built.to_json())
    assert data["method"] == "caa" and data["n_examples"] == len(PAIRS)
    assert "caa" in built.to_text()
