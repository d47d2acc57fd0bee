"""scripts/method_heldout.py: scoring a built vector at a cell its selection did not choose, labelled as reference
only, and a run's status naming what is not scored."""

from __future__ import annotations

import pytest

from grains.data import BUILTIN_DATASETS, load_pairs
from grains.item_scoring import BatchedItems
from grains.steering import Steering
from tests.factories import load_script, random_vector


@pytest.fixture(scope="module")
def script():
    return load_script("method_heldout")


def test_a_reference_cell_is_scored_against_unsteered_and_each_chosen_setting(script, lm, tmp_path):
    rows = load_pairs(BUILTIN_DATASETS["hallucination_pairs"], limit=6)
    scorer = BatchedItems(lm, rows, "pairs")
    unsteered = script.per_item(scorer.score(None), "pairs")
    vector = random_vector(lm, seed=3, norm=1.0, method="grains", k=5, n_examples=4)
    vector.save(tmp_path / "hallucination_grains.safetensors")
    res = {"kind": "pairs", "unsteered": unsteered, "methods": {"caa": {"items": unsteered, "vs_unsteered": {}}}}

    script.score_reference_cell(lm, res, scorer, "hallucination", "grains:1:2", tmp_path)

    cell = res["reference_cells"]["grains at layer 1, strength 2"]
    assert "reference only" in cell["label"] and (cell["layer"], cell["strength"]) == (1, 2.0)
    with Steering.create(lm, vector, 1, 2.0).apply(lm):
        steered = script.per_item(BatchedItems(lm, rows, "pairs").score(None), "pairs")
    want = script.compare(unsteered, steered, "pairs")
    assert cell["vs_unsteered"]["margin_gain"] == pytest.approx(want["margin_gain"], abs=1e-5)
    assert abs(want["margin_gain"]) > 1e-3  # the cell does move the margins: the comparison is not of equals
    assert cell["vs_chosen"]["caa"]["margin_gain"] == pytest.approx(want["margin_gain"], abs=1e-5)
    assert cell["side_effects"]["kl_mean"] > 0
    text = script.render({"status": "partial", "updated": "now", "tasks": {"hallucination": res}})
    assert "grains at layer 1, strength 2 (reference only: a cell the selection did not choose" in text

    res["methods"]["grains"] = {"layer": 1, "strength": 2.0, "items": unsteered}
    script.score_reference_cell(lm, res, scorer, "hallucination", "grains:1:2.0", tmp_path)  # the same key: skipped
    assert res["reference_cells"]["grains at layer 1, strength 2"]["label"].startswith("reference only")
    again = {**res, "reference_cells": {}}  # scored afresh now that it is the cell grains' selection chose
    script.score_reference_cell(lm, again, scorer, "hallucination", "grains:1:2", tmp_path)
    assert again["reference_cells"]["grains at layer 1, strength 2"]["label"].startswith("the cell this method's")
    kept = dict(cell)
    script.score_reference_cell(lm, res, scorer, "hallucination", "grains:1:2", tmp_path)  # a rerun skips it
    assert res["reference_cells"]["grains at layer 1, strength 2"] == kept


def test_the_run_status_names_every_method_not_scored(script):
    done = {"vs_unsteered": {}}
    out = {"tasks": {"hallucination": {"methods": {"caa": done, "grains": done, "pca": {"layer": 9}}},
                     "truthfulqa": {"methods": {"caa": done, "grains": done, "pca": done}}}}
    assert script.run_status(out) == "partial (hallucination/pca not scored)"
    out["tasks"]["hallucination"]["methods"]["pca"] = done
    assert script.run_status(out) == "complete"
