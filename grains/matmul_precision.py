"""Faster fp32 matrix products on the CPU, adopted only where a check shows the numbers unchanged.

PyTorch routes fp32 matrix products through oneDNN when `torch.backends.mkldnn.matmul.fp32_precision` is "bf16"
(PyTorch >= 2.9), which allows oneDNN to compute them with bf16 arithmetic. What that does depends on the CPU and the
oneDNN build, so it is never assumed: `choose_cpu_matmul_precision` multiplies the loaded model's own output head with
a block of test rows both ways and keeps the fast route only when the largest difference stays at fp32 rounding
(relative 1e-5 of the largest product). On this project's CPU (AVX-512 with bf16) the route gave the same logits to
3e-5 (of values up to 30), TruthfulQA margins to 5e-5 nats and IG scores to 1e-5 of the largest, 1.1-1.2x faster in
scoring and builds (benchmarks/README.md, "Precision"). A CPU whose oneDNN really rounds inputs to bf16 (differences of
a few 1e-3 of the largest logit) fails the check and stays in strict fp32; the route is one setting for the whole
process, so once a model fails, no later model turns it back on.

`set_strict_fp32()` (CLI: `--strict-fp32`, or GRAINS_STRICT_FP32=1) turns the fast route off for the process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch

FAST = "bf16"
STRICT = "ieee"
RELATIVE_TOLERANCE = 1e-5  # of the largest product: fp32 rounding of a sum of a few thousand terms is ~1e-6
_strict_requested = os.environ.get("GRAINS_STRICT_FP32", "") not in ("", "0")
_refused: float | None = None  # the difference of a model that failed the check (the route stays off)


def _flag() -> Any:
    return getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)


def current() -> str:
    """The process's route for fp32 products: "bf16" (oneDNN may use bf16 arithmetic), "ieee" (strict), or
    "unavailable" (a PyTorch without the setting)."""
    flag = _flag()
    return str(getattr(flag, "fp32_precision", "unavailable")) if flag is not None else "unavailable"


def _set(mode: str) -> None:
    flag = _flag()
    if flag is not None and hasattr(flag, "fp32_precision"):
        flag.fp32_precision = mode


def set_strict_fp32(strict: bool = True) -> None:
    """Force strict fp32 products for the rest of the process (True), or let models be checked again (False).

    Args:
        strict: whether to turn the fast route off.
    """
    global _strict_requested
    _strict_requested = strict
    if strict:
        _set(STRICT)


@contextmanager
def _route(mode: str) -> Iterator[None]:
    """Inside, fp32 products take route `mode`; the route before is put back after."""
    before = current()
    _set(mode)
    try:
        yield
    finally:
        if before in (FAST, STRICT):
            _set(before)


def strict_fp32() -> AbstractContextManager[None]:
    """Inside, fp32 products take the strict route (benchmarks compare the two routes in one process)."""
    return _route(STRICT)


def product_difference(weight: torch.Tensor, rows: int = 16, seed: int = 0) -> float:
    """The largest difference between the fast and the strict product of `rows` test rows with `weight`, relative
    to the largest strict product.

    Args:
        weight: a [outputs, inputs] fp32 CPU matrix (a model's output head).
        rows: test rows (unit-variance, like normalised hidden states).
        seed: their seed.

    Returns:
        max |fast - strict| / max |strict|.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, weight.shape[1], generator=generator)
    with torch.no_grad():
        with _route(STRICT):
            strict = torch.nn.functional.linear(x, weight)
        with _route(FAST):
            fast = torch.nn.functional.linear(x, weight)
    return float((fast - strict).abs().max() / strict.abs().max().clamp_min(1e-30))


def choose_cpu_matmul_precision(model: Any) -> str | None:
    """Adopt the fast route for a CPU fp32 model when its output head multiplies the same both ways.

    Args:
        model: a transformers model already on its device and dtype.

    Returns:
        A sentence for the model's notes, or None when nothing applies (GPU, another dtype, no setting, strict
        requested).
    """
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    weight = getattr(head, "weight", None)
    if (_strict_requested or current() == "unavailable" or weight is None or weight.device.type != "cpu"
            or weight.dtype != torch.float32):
        return None
    global _refused
    if _refused is not None:
        return (f"fp32 products stay strict: an earlier model's check in this process found oneDNN's fast route "
                f"off by {_refused:.1e} of the largest product.")
    difference = product_difference(weight.detach())
    if difference <= RELATIVE_TOLERANCE:
        _set(FAST)
        return (f"fp32 products go through oneDNN's fast route (checked on this model's output head: the largest "
                f"difference from strict fp32 is {difference:.1e} of the largest product); --strict-fp32 or "
                f"GRAINS_STRICT_FP32=1 turns it off.")
    _set(STRICT)
    _refused = difference
    return (f"fp32 products stay strict: oneDNN's fast route changed this model's output head by {difference:.1e} "
            f"of the largest product, more than fp32 rounding ({RELATIVE_TOLERANCE:g}).")
