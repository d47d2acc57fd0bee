"""`grains export` and `grains import`: the printed engine commands and request, the round trip through the CLI, and
one-line refusals with exit 2 for what an engine cannot take."""

import gguf
import pytest
import torch

from grains.vectors import load_vector
from tests.factories import random_vector
from tests.unit.test_cli import run


@pytest.fixture(scope="module")
def vector_file(lm, tmp_path_factory):
    vec = random_vector(lm, seed=5, strength=0.5, layer=2, norm=4.0)
    return vec, vec.save(tmp_path_factory.mktemp("cli") / "v.safetensors")


def test_export_writes_the_file_and_prints_the_commands_and_measured_gap(vector_file, tmp_path):
    _, path = vector_file
    out = tmp_path / "v.gguf"
    proc, data = run("export", str(path), "--model", "tiny-random-llama", "--out", str(out), "--layers", "1,3",
                     "--strength", "1.5", "--json")
    assert proc.returncode == 0, proc.stderr
    reader = gguf.GGUFReader(str(out))
    assert sorted(t.name for t in reader.tensors) == ["direction.1", "direction.3"]
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    assert f"--control-vector-scaled {out}:1.5 --control-vector-layer-range 1 3" in data["llama_cpp"]["llama-server"]
    assert data["easysteer_request"]["steering"]["vectors"][0]["layers"] == [1, 3]
    assert data["rescale_gap"]["mean_kl"] > 0 and "mean KL" in data["warning"]
    proc, _ = run("export", str(path), "--model", "tiny-random-llama", "--out", str(tmp_path / "t.gguf"),
                  "--no-measure", check_json=False)
    assert proc.returncode == 0 and "llama-server -m MODEL.gguf" in proc.stdout
    assert "not measured" in proc.stdout and ":0.5 --control-vector-layer-range 2 2" in proc.stdout


def test_import_brings_the_exported_vector_back(vector_file, tmp_path):
    vec, path = vector_file
    out = tmp_path / "v.gguf"
    assert run("export", str(path), "--model", "tiny-random-llama", "--out", str(out), "--layers", "1,2",
               "--no-measure", "--json")[0].returncode == 0
    proc, data = run("import", str(out), "--model", "tiny-random-llama", "--out", str(tmp_path / "back"), "--json")
    assert proc.returncode == 0, proc.stderr
    back = load_vector(data["path"])
    assert back.layers == [1, 2] and back.meta["provenance"].startswith("imported from v.gguf")
    for layer in back.layers:
        torch.testing.assert_close(back.scaled(layer, 0.5), vec.scaled(layer, 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--layers", "0,2"], "llama.cpp cannot steer layer 0"),
    (["--layers", "7"], "out of range"),
    (["--strength", "9"], "strength must be from"),
    (["--format", "safetensors"], "invalid choice"),
])
def test_export_refuses_in_one_line(vector_file, tmp_path, extra, message):
    _, path = vector_file
    proc, _ = run("export", str(path), "--model", "tiny-random-llama", "--out", str(tmp_path / "v.gguf"), *extra,
                  check_json=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_refuses_a_vlm(tmp_path):
    from grains.models import load_model

    vlm = load_model("tiny-random-llava")
    path = random_vector(vlm, layer=1).save(tmp_path / "vlm.safetensors")
    proc, _ = run("export", str(path), "--model", "tiny-random-llava", "--out", str(tmp_path / "v.gguf"),
                  check_json=False)
    assert proc.returncode == 2 and "vision-language model" in proc.stderr
    assert not (tmp_path / "v.gguf").exists()


def test_import_refuses_a_broken_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 7)
    proc, _ = run("import", str(bad), "--model", "tiny-random-llama", "--out", str(tmp_path / "x"), check_json=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
