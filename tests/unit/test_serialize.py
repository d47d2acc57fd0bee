"""The one JSON path (grains.serialize): NaN/inf -> null, tuples -> lists, numpy/torch -> Python, dataclasses."""

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from grains.serialize import dumps, to_jsonable


@dataclass
class _Row:
    name: str
    gain: float


def test_non_finite_numbers_become_null_and_finite_ones_stay():
    out = to_jsonable({"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 0.25, "e": 3, "f": True})
    assert out == {"a": None, "b": None, "c": None, "d": 0.25, "e": 3, "f": True}


def test_containers_keys_and_array_types():
    out = to_jsonable({1: (1, 2), "arr": np.array([0.5, np.nan]), "t": torch.tensor([1.0, 2.0]),
                       "np": np.float32(1.5), "row": _Row("x", math.nan)})
    assert out == {"1": [1, 2], "arr": [0.5, None], "t": [1.0, 2.0], "np": 1.5, "row": {"name": "x", "gain": None}}
    assert isinstance(out["np"], float)


def test_dumps_is_valid_strict_json_and_keeps_text():
    text = dumps({"word": "café", "x": float("nan")})
    def refuse(constant):
        raise ValueError(constant)

    assert json.loads(text, parse_constant=refuse) == {"word": "café", "x": None}
    assert "café" in text
