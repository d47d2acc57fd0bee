"""The command line contract: JSON shapes and one-line errors with a non-zero exit."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, check_json=True):
    proc = subprocess.run([sys.executable, "-m", "grains", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    data = json.loads(proc.stdout) if check_json and proc.returncode == 0 else None
    return proc, data


def test_attribute_json():
    proc, data = run("attribute", "--model", "tiny-random-llama", "--prompt", "Is the sky blue?", "--chosen", "Yes",
                     "--rejected", "No", "--steps", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {"tokens", "scores", "f_input", "f_baseline", "delta", "seconds"} <= set(data)
    assert len(data["tokens"]) == len(data["scores"])
    total = sum(data["plus_scores"]) + sum(data["minus_scores"])
    assert total - (data["f_input"] - data["f_baseline"]) == pytest.approx(data["delta"], abs=1e-4)


def test_build_generate_eval_json(tmp_path):
    out = tmp_path / "v.safetensors"
    proc, data = run("build", "--model", "tiny-random-llama", "--data", "truthfulqa", "--limit", "6", "--top-k", "3",
                     "--steps", "4", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and out.with_suffix(".json").exists()
    assert {"layer", "strength", "method", "n_examples", "selection"} <= set(data)
    proc, gen = run("generate", "--model", "tiny-random-llama", "--prompt", "Is the sky blue?", "--vector", str(out),
                    "--layer", "1", "--strength", "0", "--max-new-tokens", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    assert gen["unsteered"] == gen["steered"]
    proc, ev = run("eval", "--model", "tiny-random-llama", "--data", "truthfulqa", "--offset", "6", "--limit", "3",
                   "--vector", str(out), "--layer", "1", "--strength", "0.5", "--per-item", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {"n", "mc1", "mc2", "mc1_unsteered", "mc2_unsteered", "p_value", "gain_ci", "items"} <= set(ev)
    assert ev["n"] == 3 and len(ev["items"]) == 3
    proc, pairs = run("eval", "--model", "tiny-random-llama", "--data", "hhh_alignment", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {"n", "accuracy", "accuracy_unsteered", "margin", "margin_unsteered"} <= set(pairs)


@pytest.mark.parametrize("args, message", [
    (["attribute", "--model", "tiny-random-llama", "--prompt", "", "--chosen", "a", "--rejected", "b"], "empty"),
    (["attribute", "--model", "tiny-random-llama", "--prompt", "x", "--chosen", "a", "--rejected", "a"], "identical"),
    (["attribute", "--model", "no-such-model", "--prompt", "x", "--chosen", "a", "--rejected", "b"], "not a preset"),
    (["attribute", "--model", "someone/offline-model", "--prompt", "x", "--chosen", "a", "--rejected", "b"],
     "hub"),
    (["generate", "--model", "tiny-random-llama", "--prompt", "x", "--vector", "/nonexistent.safetensors"],
     "No vector file"),
    (["eval", "--model", "tiny-random-llama", "--data", "/nonexistent.jsonl"], "nonexistent"),
    (["attribute", "--model", "tiny-random-llama", "--prompt", "x", "--chosen", "a", "--rejected", "b", "--image",
      "/nonexistent.jpg"], "no image file"),
])
def test_errors_are_one_line_and_non_zero(args, message):
    proc, _ = run(*args, check_json=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert message.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr


def test_vector_from_another_model_is_refused(tmp_path):
    import torch

    from grains.vectors import SteeringVector

    path = SteeringVector({0: torch.ones(32)}, {0: 1.0}, "tiny-random-qwen2", 32, 4).save(tmp_path / "q.safetensors")
    proc, _ = run("generate", "--model", "tiny-random-llama", "--prompt", "x", "--vector", str(path),
                  "--layer", "0", "--strength", "1", check_json=False)
    assert proc.returncode == 2 and "built for 'tiny-random-qwen2'" in proc.stderr
