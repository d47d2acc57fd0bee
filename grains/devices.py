"""Choosing the device and dtype a model runs on."""

from __future__ import annotations

import torch

from grains.errors import InputError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless `requested` names one ("cpu", "cuda", "cuda:1", "mps")."""
    if requested and requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise InputError(f"Unknown device {requested!r}: use cpu, cuda, cuda:N, mps or auto.") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("CUDA was requested but no CUDA GPU is available here.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on CUDA (gradients are unsafe in fp16), fp32 elsewhere, unless `requested` says otherwise."""
    if isinstance(requested, torch.dtype):
        return requested
    if requested and requested != "auto":
        if requested not in _DTYPES:
            raise InputError(f"Unknown dtype {requested!r}: use one of {', '.join(sorted(_DTYPES))} or auto.")
        return _DTYPES[requested]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def gpu_count() -> int:
    """Number of visible CUDA GPUs."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
