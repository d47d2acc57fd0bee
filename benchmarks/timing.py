"""Small shared pieces of the benchmarks: the progress callback type, medians and wall-clock timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[str], None]


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return float(statistics.median(values)) if values else float("nan")


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
