"""`python -m grains check-image`: the metrics JSON on each of the five tiny random VLM families, a held-out re-check,
and bad input (no objects, 500 objects, a non-image, a text-only model) as exit code 2 with one clear line.

The five families run `grains.cli.main([...])` in-process (one interpreter, models cached); one real subprocess checks
the contract end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grains.cli import EXIT_USER_ERROR, main

ROOT = Path(__file__).resolve().parents[2]
COFFEE = str(ROOT / "assets" / "images" / "coffee.jpg")
VLMS = ["tiny-random-llava", "tiny-random-llava-next", "tiny-random-qwen2-vl", "tiny-random-idefics3",
        "tiny-random-gemma3"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check-image", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", VLMS)
def test_metrics_json_on_each_family(capsys, model):
    code, out, err = run(capsys, "--model", model, "--image", COFFEE, "--present", "cup,spoon",
                         "--absent", "fork,laptop", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == model and data["random_weights"] is True and data["n"] == 4
    probes = data["probes"]
    assert [(p["object"], p["truth"]) for p in probes] == [("cup", "yes"), ("spoon", "yes"), ("fork", "no"),
                                                           ("laptop", "no")]
    m = data["unsteered"]
    yes = [p["answer"] == "yes" for p in probes]
    assert m["yes_ratio"] == pytest.approx(sum(yes) / 4)
    assert m["accuracy"] == pytest.approx(sum(p["answer"] == p["truth"] for p in probes) / 4)
    assert m["hallucinations"] == sum(p["hallucination"] for p in probes)
    assert {"precision", "recall", "f1"} <= set(m)
    assert data["steered"] is None and data["mcnemar"] is None


def test_setting_proposes_absent_objects_and_vector_compares(capsys, tmp_path):
    code, out, err = run(capsys, "--model", "tiny-random-qwen2-vl", "--image", COFFEE, "--present", "Cups,spoons",
                         "--setting", "adversarial", "--json")
    assert code == 0, err
    data = json.loads(out)
    absent = [p["object"] for p in data["probes"] if p["truth"] == "no"]
    assert data["setting"] == "adversarial" and len(absent) == 2
    assert not {"cup", "spoon"} & set(absent)
    # a held-out re-check from this photo's own probes, then the saved vector through --vector
    code, out, err = run(capsys, "--model", "tiny-random-qwen2-vl", "--image", COFFEE, "--present", "cup,spoon,saucer",
                         "--absent", "fork,laptop,cat", "--build-from", "probes", "--steps", "2", "--strength", "1",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    split = data["split"]
    assert not set(split["build_ids"]) & set(split["check_ids"]) and data["n"] == split["n_check"]
    assert data["mcnemar"]["n"] == data["n"] and "With" in data["mcnemar"]["power_note"]
    assert data["steering"]["strength"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["--present", "", "--absent", ""], "at least one object"),
    (["--present", ",".join(f"thing{i}" for i in range(500))], "500 present objects"),
    (["--present", "cup", "--absent", "Cups"], "both as present and as absent"),
    (["--present", "cup", "--absent", "fork", "--setting", "random"], "not both"),
])
def test_bad_object_lists(capsys, args, message):
    code, out, err = run(capsys, "--model", "tiny-random-llava", "--image", COFFEE, *args, "--json")
    assert code == EXIT_USER_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_non_image_and_text_model(capsys, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is text, not a photo")
    code, out, err = run(capsys, "--model", "tiny-random-llava", "--image", str(bad), "--present", "cup", "--json")
    assert code == EXIT_USER_ERROR and err.count("\n") == 1 and "not an image" in err
    code, out, err = run(capsys, "--model", "tiny-random-llama", "--image", COFFEE, "--present", "cup", "--json")
    assert code == EXIT_USER_ERROR and err.count("\n") == 1 and "text-only model" in err
    code, out, err = run(capsys, "--model", "tiny-random-llava", "--image", str(tmp_path / "none.png"), "--present",
                         "cup")
    assert code == EXIT_USER_ERROR and err.count("\n") == 1 and "no image file" in err


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_subprocess_contract():
    """Two real processes, started together so their interpreter start-ups (Python, torch, transformers) overlap."""
    command = [sys.executable, "-m", "grains", "check-image", "--model", "tiny-random-idefics3", "--image", COFFEE]
    procs = [subprocess.Popen(command + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for extra in (["--present", "cup", "--setting", "popular", "--json"], ["--json"])]
    try:
        ok, bad = (finished(p) for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert [p["object"] for p in data["probes"]] == ["cup", "person"]
    assert bad.returncode == EXIT_USER_ERROR and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "at least one object" in bad.stderr
