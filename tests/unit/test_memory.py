"""grains.memory: the per-point activation estimate, the chunk size under a memory budget, and how an
out-of-memory error becomes a ResourceError while every other error passes through."""

from __future__ import annotations

import pytest
import torch

from grains import memory
from grains.errors import ResourceError
from grains.memory import CPU_CAP_BYTES, auto_chunk_size, ig_bytes_per_point, is_oom, oom_guard

MB = 1024**2


def test_bytes_per_point_formula():
    # 2 sequences x (seq_len x layers x (12 h + 3 i) x bytes + kept x vocab x 4 x 3)
    assert ig_bytes_per_point(10, 2, 8, 3, 16, 100, 4) == 2 * (10 * 3 * (96 + 48) * 4 + 2 * 100 * 12)
    assert ig_bytes_per_point(10, 2, 8, 3, 16, 100, 4) == 39360
    assert ig_bytes_per_point(20, 2, 8, 3, 16, 100, 4) > ig_bytes_per_point(10, 2, 8, 3, 16, 100, 4)
    assert ig_bytes_per_point(10, 2, 8, 3, 16, 100, 2) < ig_bytes_per_point(10, 2, 8, 3, 16, 100, 4)


def test_available_bytes_on_the_cpu_is_positive():
    assert memory.available_bytes(torch.device("cpu")) > 0


@pytest.mark.parametrize(("free", "per_point", "steps", "device", "expected"), [
    (4000 * MB, 10 * MB, 100, "cpu", 64),  # CPU: min(quarter of 4000 MB, 640 MB cap) = 640 MB / 10 MB
    (400 * MB, 10 * MB, 100, "cpu", 10),  # a quarter of 400 MB = 100 MB / 10 MB
    (400 * MB, 10 * MB, 6, "cpu", 6),  # never more than the steps
    (1 * MB, 10 * MB, 16, "cpu", 1),  # never fewer than one
    (4000 * MB, 10 * MB, 1000, "cuda", 200),  # GPU: half the free memory, no cap
])
def test_auto_chunk_size(monkeypatch, free, per_point, steps, device, expected):
    monkeypatch.setattr(memory, "available_bytes", lambda _device: free)
    assert auto_chunk_size(steps, per_point, torch.device(device)) == expected


def test_auto_chunk_size_budget_and_cap(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda _device: 1000 * MB)
    cpu = torch.device("cpu")
    assert auto_chunk_size(1000, MB, cpu, budget_fraction=0.1) == 100
    assert auto_chunk_size(1000, MB, cpu, cap_bytes=50 * MB) == 50
    assert auto_chunk_size(1000, MB, cpu) == min(250, CPU_CAP_BYTES // MB)


def test_is_oom():
    assert is_oom(MemoryError())
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))  # only allocation failures, not any text


def test_oom_guard():
    with pytest.raises(ResourceError, match="Ran out of memory during attribution: use fewer steps") as info:
        with oom_guard("attribution", "use fewer steps"):
            raise RuntimeError("CUDA out of memory")
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(KeyError):
        with oom_guard("attribution", "use fewer steps"):
            raise KeyError("not memory")
    with oom_guard("attribution", "use fewer steps"):
        value = 1 + 1
    assert value == 2
