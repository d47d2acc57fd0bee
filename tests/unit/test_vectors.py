"""Vector files: round trip, model mismatch, pickles refused, corrupt files, missing metadata."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from grains.errors import VectorError
from grains.vectors import SteeringVector, load_vector


def make_vector(model_id="tiny-random-llama", hidden=32, layers=4):
    return SteeringVector(
        directions={i: torch.randn(hidden) for i in range(layers)}, layer_norms={i: 2.0 + i for i in range(layers)},
        model_id=model_id, hidden_size=hidden, num_layers=layers, method="grains", k=5, n_examples=16,
        default_layer=2, default_strength=0.25, meta={"note": "test", "selection": {"cv_margin_gain": 0.1}},
    )


def test_round_trip(tmp_path):
    vector = make_vector()
    path = vector.save(tmp_path / "v.safetensors")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model_id"] == "tiny-random-llama" and sidecar["hidden_size"] == 32
    loaded = load_vector(path)
    assert loaded.layers == vector.layers
    for layer in vector.layers:
        assert torch.equal(loaded.directions[layer], vector.directions[layer])
    assert loaded.layer_norms == vector.layer_norms
    assert (loaded.default_layer, loaded.default_strength, loaded.k, loaded.n_examples) == (2, 0.25, 5, 16)
    assert loaded.meta["selection"]["cv_margin_gain"] == 0.1


def test_scaled_has_the_relative_length():
    vector = make_vector()
    assert float(vector.scaled(1, 0.5).norm()) == pytest.approx(0.5 * 3.0, rel=1e-5)
    assert float(vector.scaled(1, 0.0).norm()) == 0.0


def test_mismatch_errors():
    vector = make_vector()
    vector.check_fits("tiny-random-llama", 32, 4)
    with pytest.raises(VectorError, match="hidden size"):
        vector.check_fits("other", 64, 4)
    with pytest.raises(VectorError, match="not for"):
        vector.check_fits("other-model", 32, 4)
    with pytest.raises(VectorError, match="layers up to"):
        vector.check_fits("tiny-random-llama", 32, 2)


def test_pickle_disguised_as_safetensors_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"

    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path.write_bytes(pickle.dumps({"layer.0": Boom()}))
    with pytest.raises(VectorError, match="pickle"):
        load_vector(path)
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"a": torch.zeros(2)}, torch_file)  # a zip archive
    with pytest.raises(VectorError, match="pickle"):
        load_vector(torch_file)


@pytest.mark.parametrize("content", [b"", b"short", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1, truncated",
                                     b"\xff" * 64])
def test_corrupt_files(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(VectorError):
        load_vector(path)


def test_truncated_real_file(tmp_path):
    path = make_vector().save(tmp_path / "v.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(VectorError):
        load_vector(path)


def test_missing_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"layer.0": torch.zeros(4)}, str(path))
    with pytest.raises(VectorError, match="no GrAInS metadata"):
        load_vector(path)
    meta_path = tmp_path / "partial.safetensors"
    save_file({"layer.0": torch.zeros(4)}, str(meta_path), metadata={"grains": json.dumps(
        {"format": "grains-steering-vector/1"})})
    with pytest.raises(VectorError, match="metadata"):
        load_vector(meta_path)


def test_missing_file(tmp_path):
    with pytest.raises(VectorError, match="No vector file"):
        load_vector(tmp_path / "nope.safetensors")


def test_nan_direction_refused():
    with pytest.raises(VectorError, match="NaN"):
        SteeringVector({0: torch.tensor([float("nan")] * 4)}, {0: 1.0}, "m", 4, 1)
