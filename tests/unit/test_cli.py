"""The command line contract: JSON shapes and one-line errors with a non-zero exit.

Most tests run `grains.cli.main([...])` in-process (one interpreter: no Python + torch + transformers start-up per
command); `test_attribute_json` runs a real `python -m grains` subprocess to check the contract end to end (exit 0,
stdout is the JSON alone). Real processes that fail with one line and exit 2 are in test_bad_inputs_cli and
test_cli_check_image."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from grains.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_subprocess(*args, check_json=True):
    proc = subprocess.run([sys.executable, "-m", "grains", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    data = json.loads(proc.stdout) if check_json and proc.returncode == 0 else None
    return proc, data


def run(*args, check_json=True):
    """`python -m grains ARGS` in this process: (returncode, stdout, stderr) like subprocess.run's, and the JSON."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    proc = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    data = json.loads(proc.stdout) if check_json and proc.returncode == 0 else None
    return proc, data


def test_attribute_json():
    proc, data = run_subprocess("attribute", "--model", "tiny-random-llama", "--prompt", "Is the sky blue?",
                                "--chosen", "Yes", "--rejected", "No", "--steps", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {"tokens", "scores", "f_input", "f_baseline", "delta", "seconds"} <= set(data)
    assert len(data["tokens"]) == len(data["scores"])
    total = sum(data["plus_scores"]) + sum(data["minus_scores"])
    assert total - (data["f_input"] - data["f_baseline"]) == pytest.approx(data["delta"], abs=1e-4)


def test_build_generate_eval_json(tmp_path):
    out = tmp_path / "v.safetensors"  # 2 candidate strengths (and 0): a small cross-validation grid
    proc, data = run("build", "--model", "tiny-random-llama", "--data", "truthfulqa", "--limit", "6", "--top-k", "3",
                     "--steps", "4", "--strengths", "0.25,1", "--out", str(out), "--json")
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


def test_attribute_with_a_vector_adds_the_steered_heatmap_and_the_difference(tmp_path):
    import torch

    from grains.models import load_model
    from grains.vectors import SteeringVector

    lm = load_model("tiny-random-llama")
    gen = torch.Generator().manual_seed(0)
    path = SteeringVector(directions={i: torch.randn(lm.hidden_size, generator=gen) for i in range(lm.num_layers)},
                          layer_norms={i: 3.0 for i in range(lm.num_layers)}, model_id=lm.model_id,
                          hidden_size=lm.hidden_size, num_layers=lm.num_layers, default_layer=1,
                          default_strength=2.0).save(tmp_path / "v.safetensors")
    proc, data = run("attribute", "--model", "tiny-random-llama", "--prompt", "The weather this weekend", "--chosen",
                     " was lovely.", "--rejected", " was awful.", "--steps", "6", "--tolerance", "0", "--vector",
                     str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    steered, diff = data["steered"], data["difference"]
    assert steered["steering"]["layers"] == [1] and steered["steering"]["strength"] == 2.0  # the vector's suggestion
    assert len(steered["scores"]) == len(data["scores"]) == len(diff["scores"])
    for d, u, s in zip(diff["scores"], data["scores"], steered["scores"]):
        assert d == pytest.approx(s - u, abs=1e-9)
    assert diff["margin_change"] == pytest.approx(steered["f_input"] - data["f_input"])
    assert abs(diff["margin_change"]) > 1e-4  # a strong random vector moves the margin
    proc, zero = run("attribute", "--model", "tiny-random-llama", "--prompt", "The weather this weekend", "--chosen",
                     " was lovely.", "--rejected", " was awful.", "--steps", "6", "--tolerance", "0", "--vector",
                     str(path), "--layer", "1", "--strength", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert zero["difference"]["margin_change"] == 0.0
