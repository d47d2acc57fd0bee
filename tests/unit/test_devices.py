"""grains.devices: the device and dtype a model runs on (CPU here; bf16 only on a GPU that supports it)."""

import pytest
import torch

from grains.devices import gpu_count, pick_device, pick_dtype


def test_cpu_runs_in_fp32_by_default_and_honours_an_explicit_dtype():
    cpu = pick_device("cpu")
    assert cpu.type == "cpu"
    assert pick_dtype(cpu) == torch.float32
    assert pick_dtype(cpu, "bfloat16") == torch.bfloat16
    assert pick_dtype(cpu, torch.float64) == torch.float64


def test_automatic_device_matches_what_the_machine_has():
    auto = pick_device(None)
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert gpu_count() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if not torch.cuda.is_available():
        assert auto.type in ("cpu", "mps")


def test_an_unknown_device_or_dtype_is_refused_in_one_sentence():
    from grains.errors import InputError

    with pytest.raises(InputError, match="Unknown device 'quantum'"):
        pick_device("quantum")
    with pytest.raises(InputError, match="Unknown dtype 'float7'"):
        pick_dtype(torch.device("cpu"), "float7")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16  # the rule for GPUs, whatever this machine has
