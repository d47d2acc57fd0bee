"""Memory budgets and out-of-memory handling for batched IG."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from grains.errors import ResourceError


def available_bytes(device: torch.device) -> int:
    """Free memory on the device (system RAM available for the CPU).

    Args:
        device: a torch device.

    Returns:
        Bytes.

    Example:
        >>> available_bytes(torch.device("cpu")) > 0
        True
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil ships with gradio
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def ig_bytes_per_point(seq_len: int, kept_positions: int, hidden: int, layers: int, intermediate: int,
                       vocab: int, dtype_bytes: int) -> int:
    """Rough activation memory for one interpolation point (two sequences, forward + backward).

    Args:
        seq_len: the longer sequence's length.
        kept_positions: logit positions kept per sequence.
        hidden: hidden size.
        layers: decoder layers.
        intermediate: MLP width.
        vocab: vocabulary size.
        dtype_bytes: bytes per activation value.

    Returns:
        Bytes per point.

    Example:
        >>> ig_bytes_per_point(10, 2, 8, 3, 16, 100, 4)
        39360
    """
    per_token = layers * (12 * hidden + 3 * intermediate) * dtype_bytes
    logits = kept_positions * vocab * 4 * 3  # fp32 logits, log-softmax and its gradient
    return 2 * (seq_len * per_token + logits)


CPU_CAP_BYTES = 640 * 1024**2


def auto_chunk_size(steps: int, bytes_per_point: int, device: torch.device, budget_fraction: float | None = None,
                    cap_bytes: int = CPU_CAP_BYTES) -> int:
    """How many interpolation points fit at once: half the free memory on a GPU; on the CPU a quarter of the
    available RAM capped at `cap_bytes`. The CPU cap is small on purpose: a CPU gains nothing from big batches
    (Gemma-3-270M, 20 points, 1 thread: 15.1 s in chunks of 5, 18.6 s in chunks of 10, 22.1 s all at once),
    and every extra point costs memory.

    Args:
        steps: interpolation points in all.
        bytes_per_point: ig_bytes_per_point(...).
        device: where the model runs.
        budget_fraction: the share of free memory to use (default: 0.5 on a GPU, 0.25 on the CPU).
        cap_bytes: the CPU cap.

    Returns:
        From 1 to `steps`.

    Example:
        >>> auto_chunk_size(16, 100 * 1024**2, torch.device("cpu"))  # with over 2.5 GB free: the 640 MB cap / 100 MB
        6
    """
    fraction = budget_fraction if budget_fraction is not None else (0.5 if device.type == "cuda" else 0.25)
    budget = available_bytes(device) * fraction
    if device.type != "cuda":
        budget = min(budget, cap_bytes)
    return int(max(1, min(steps, budget // max(1, bytes_per_point))))


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures.

    Args:
        exc: any exception.

    Returns:
        Whether it is an allocation failure (other errors that mention memory are not).

    Example:
        >>> is_oom(MemoryError()), is_oom(ValueError("out of memory"))
        (True, False)
    """
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def oom_guard(what: str, advice: str) -> Iterator[None]:
    """Turn an out-of-memory error into a ResourceError that says what to change.

    Args:
        what: what was running ("attribution").
        advice: what to change ("use fewer steps").

    Returns:
        A context manager.

    Example:
        >>> with oom_guard("attribution", "use fewer steps or a smaller chunk size"):
        ...     run_the_batch()
    """
    try:
        yield
    except Exception as exc:
        if is_oom(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise ResourceError(f"Ran out of memory during {what}: {advice}") from exc
        raise
