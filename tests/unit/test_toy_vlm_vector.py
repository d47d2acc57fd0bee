"""The shipped toy-VLM vector: it fits the toy model, carries its held-out evaluation (GrAInS and CAA on the same
split, where its top-k tokens sat), and `python -m grains eval --model toy-vlm-shapes --data DIR/probes.jsonl
--vector assets/toy_vlm_vector.safetensors` runs on freshly generated held-out scenes."""

from __future__ import annotations

import json
from pathlib import Path

from grains.cli import main
from grains.vectors import load_vector

ROOT = Path(__file__).resolve().parents[2]
VECTOR = ROOT / "assets" / "toy_vlm_vector.safetensors"


def test_the_shipped_vector_fits_the_toy_model_and_carries_its_heldout_evaluation():
    vector = load_vector(VECTOR)
    assert vector.method == "grains" and vector.model_id.endswith("toy-vlm-shapes")
    ev = vector.meta["heldout_evaluation"]
    build, test = vector.meta["split"]["build_scenes"], vector.meta["split"]["test_scenes"]
    assert build[0] > test[1] or test[0] > build[1]  # build and test scenes never overlap
    for key in ("probe_evaluation", "caa_same_split"):
        res = ev[key]
        assert res["strength"] == 0 or res["adversarial"]["n"] >= 200 and res["present"]["n"] >= 200
    places = ev["topk_places"]
    assert abs(sum(places["share"].values()) - 1) < 1e-9 and "text" in places["share"]
    grid = ev["strength_grid"]  # every layer x strength of both vectors on validation scenes (chose nothing)
    validation = vector.meta["split"]["validation_scenes"]
    assert all(validation[0] > other[1] or other[0] > validation[1] for other in (build, test))
    assert grid[0]["vector"] == "none" and {r["vector"] for r in grid} == {"none", "grains", "caa"}
    assert len(grid) == 1 + 2 * 4 * 5 and all(r["planted"].endswith("/" + grid[0]["planted"].split("/")[1])
                                              for r in grid)


def test_cli_eval_with_the_shipped_vector_on_generated_held_out_scenes(tmp_path, capsys):
    assert main(["scenes", "--seed", "1000000500", "--n", "1", "--out", str(tmp_path), "--json"]) == 0
    rows = (tmp_path / "probes.jsonl").read_text().splitlines()
    capsys.readouterr()
    assert main(["eval", "--model", "toy-vlm-shapes", "--data", str(tmp_path / "probes.jsonl"), "--vector",
                 str(VECTOR), "--no-side-effects", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    vector = load_vector(VECTOR)
    assert report["n"] == len(rows) and report["kind"] == "probes"
    assert report["strength"] == vector.default_strength and report["layer"] == [vector.default_layer]
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["accuracy_unsteered"] <= 1
