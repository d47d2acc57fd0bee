"""Fuzz grains.vectors.load_vector: arbitrary bytes, mutated valid files and random metadata give a valid
SteeringVector or a VectorError, never another exception, and nothing is ever unpickled."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from grains.errors import VectorError
from grains.vectors import FORMAT, SteeringVector, load_vector

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_bytes() -> bytes:
    vector = SteeringVector(directions={0: torch.linspace(-1, 1, 8), 2: torch.ones(8)}, layer_norms={0: 1.5, 2: 2.0},
                            model_id="tiny", hidden_size=8, num_layers=3, default_layer=2, default_strength=0.5)
    with tempfile.TemporaryDirectory() as folder:
        return vector.save(Path(folder) / "v.safetensors").read_bytes()


VALID = _valid_bytes()


def check_load(path: Path) -> None:
    """load_vector either returns a well-formed vector or raises VectorError."""
    try:
        vector = load_vector(path)
    except VectorError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        return
    assert isinstance(vector, SteeringVector)
    for layer, direction in vector.directions.items():
        assert isinstance(layer, int) and direction.shape == (vector.hidden_size,)
        assert torch.isfinite(direction).all()


def load_bytes(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.safetensors"
        path.write_bytes(content)
        check_load(path)


@FUZZ
@given(content=st.binary(max_size=600))
def test_arbitrary_bytes(content):
    load_bytes(content)


@FUZZ
@given(content=st.binary(max_size=300))
def test_arbitrary_bytes_behind_a_plausible_header(content):
    """Bytes after an 8-byte length and a "{": gets past the cheap header check into the parser."""
    load_bytes(len(content).to_bytes(8, "little") + b"{" + content)


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]), st.integers(0, len(VALID) - 1),
              st.integers(0, 255)),
    min_size=1, max_size=6,
)


@FUZZ
@given(mutations=MUTATIONS)
def test_mutated_valid_files(mutations):
    data = bytearray(VALID)
    for kind, pos, value in mutations:
        pos = min(pos, max(len(data) - 1, 0))
        if not data:
            break
        if kind == "flip":
            data[pos] ^= 1 << (value % 8)
        elif kind == "set":
            data[pos] = value
        elif kind == "delete":
            del data[pos]
        elif kind == "insert":
            data.insert(pos, value)
        else:
            del data[pos:]
    load_bytes(bytes(data))


SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
META_KEYS = st.sampled_from(["format", "model_id", "hidden_size", "num_layers", "layers", "layer_norms", "method",
                             "k", "n_examples", "default_layer", "default_strength", "meta", "x"])


def _good_meta() -> dict[str, Any]:
    return {"format": FORMAT, "model_id": "tiny", "hidden_size": 8, "num_layers": 3, "layers": [0],
            "layer_norms": {"0": 1.0}, "method": "grains", "k": 3, "n_examples": 2, "default_layer": 0,
            "default_strength": 0.5, "meta": {}}


def write_meta(meta: Any, tensors: dict[str, torch.Tensor], raw: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.safetensors"
        text = raw if raw is not None else json.dumps(meta, allow_nan=True)
        save_file(tensors, str(path), metadata={"grains": text})
        check_load(path)


@FUZZ
@given(overrides=st.dictionaries(META_KEYS, JSON_VALUES, max_size=5), drop=st.sets(META_KEYS, max_size=4))
def test_random_metadata_fields(overrides, drop):
    meta = {**_good_meta(), **overrides}
    for key in drop:
        meta.pop(key, None)
    write_meta(meta, {"layer.0": torch.ones(8)})


NUMERIC_KEYS = st.sampled_from(["hidden_size", "num_layers", "n_examples", "default_layer", "default_strength", "k"])
EXTREMES = st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**70, -(2**70), -1, 0, 1e308, "1e400", "nan",
                            "3", True, None]) | st.floats() | st.integers()


@FUZZ
@given(values=st.dictionaries(NUMERIC_KEYS, EXTREMES, min_size=1, max_size=3),
       norm=EXTREMES, norm_key=st.sampled_from(["0", "-1", "1e400", "99999999999999999999999", "x"]))
def test_extreme_numbers_in_metadata(values, norm, norm_key):
    """Infinite, NaN and huge numbers in number fields (int(inf) raised OverflowError before the fix)."""
    write_meta({**_good_meta(), **values, "layer_norms": {norm_key: norm}}, {"layer.0": torch.ones(8)})


@FUZZ
@given(meta=JSON_VALUES, raw=st.none() | st.text(max_size=60))
def test_random_metadata_json(meta, raw):
    write_meta(meta, {"layer.0": torch.ones(8)}, raw)


TENSOR_NAMES = st.sampled_from(["layer.0", "layer.1", "layer.-1", "layer.x", "layer.", "layer.99999999999999999999",
                                "other", "layer.2.5"])
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool,
                          torch.float64])


@FUZZ
@given(specs=st.dictionaries(TENSOR_NAMES, st.tuples(st.lists(st.integers(0, 9), max_size=3), DTYPES,
                                                      st.sampled_from([0.0, 1.0, float("nan"), float("inf")])),
                             max_size=3))
def test_random_tensors_with_valid_metadata(specs):
    tensors = {}
    for name, (shape, dtype, fill) in specs.items():
        value = fill if dtype.is_floating_point else 1
        tensors[name] = torch.full(tuple(shape), value).to(dtype)
    write_meta(_good_meta(), tensors)


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@FUZZ
@given(protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), suffix=st.binary(max_size=20))
def test_pickles_are_never_unpickled(protocol, suffix):
    with tempfile.TemporaryDirectory() as folder:
        marker = Path(folder) / "unpickled"
        path = Path(folder) / "v.safetensors"
        path.write_bytes(pickle.dumps({"layer.0": _Marker(str(marker))}, protocol=protocol) + suffix)
        try:
            load_vector(path)
        except VectorError:
            pass
        else:
            raise AssertionError("a pickle loaded as a vector")
        assert not marker.exists()


def test_valid_file_round_trips():
    load_bytes(VALID)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.safetensors"
        path.write_bytes(VALID)
        vector = load_vector(path)
        assert vector.layers == [0, 2] and vector.default_layer == 2
