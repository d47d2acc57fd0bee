"""scripts/method_heldout.py: scoring a built vector at a cell its selection did not choose, labelled as reference
only, and a run's status naming what is not scored."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from grains.data import BUILTIN_DATASETS, load_pairs
from grains.item_scoring import BatchedItems
from grains.steering import Steering
from grains.vectors import SteeringVector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("method_heldout", ROOT / "scripts" / "method_heldout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector(lm) -> SteeringVector:
    gen = torch.Generator().manual_seed(3)
    directions = {layer: torch.randn(lm.hidden_size, generator=gen) for layer in range(lm.num_layers)}
    return SteeringVector(directions=directions, layer_norms={layer: 1.0 for layer in range(lm.num_layers)},
                          model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers, method="grains",
                          k=5, n_examples=4)


def test_a_reference_cell_is_scored_against_unsteered_and_each_chosen_setting(script, lm, tmp_path):
    rows = load_pairs(BUILTIN_DATASETS["hallucination_pairs"], limit=6)
    scorer = BatchedItems(lm, rows, "pairs")
    unsteered = script.per_item(scorer.score(None), "pairs")
    vector = _vector(lm)
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
    assert "Reference only (grains at layer 1, strength 2; the selection did not choose it)" in text

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
