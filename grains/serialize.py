"""One JSON path for every result: the CLI's `--json`, the app's JSON panels and the results' `to_json()`.

NaN and infinities become null (JSON has neither), tuples become lists, keys become strings, numpy and torch
scalars and arrays become Python numbers and lists, and dataclasses (or anything with `to_dict()`) become dicts."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """A JSON-safe copy of `value`.

    Args:
        value: a dict, list, tuple, number, string, None, numpy/torch value, dataclass, or an object with `to_dict()`.

    Returns:
        Plain dicts, lists, strings, finite floats, ints, bools and None (NaN/inf -> None).

    Example:
        >>> to_jsonable({"gain": float("nan"), (1, 2): (3, 4)})
        {'gain': None, '(1, 2)': [3, 4]}
    """
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # a torch tensor, without importing torch here
        return to_jsonable(value.detach().cpu().tolist())
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """`json.dumps` of `to_jsonable(value)`, keeping non-ASCII text as written.

    Args:
        value: anything `to_jsonable` accepts.
        indent: as in `json.dumps`.

    Returns:
        The JSON text.
    """
    return json.dumps(to_jsonable(value), ensure_ascii=False, indent=indent)
