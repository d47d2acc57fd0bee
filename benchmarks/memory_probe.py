"""IG memory, measured in a fresh process: load the model, record RSS, reset the kernel's peak counter, run one IG
(the engine's or the reference loop's) and read the peak; also the warm run's time and the scores, for agreement."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.ig_bench import IG_CHOSEN, IG_PROMPT, IG_REJECTED

_MB = 1024 * 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / _MB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def _peak_rss() -> Iterator[dict[str, Any]]:
    """Peak RSS (MB) inside the block: the kernel's VmHWM after a reset where possible, else a 2 ms psutil sampler."""
    out: dict[str, Any] = {}
    kernel = _reset_peak() and _vm_hwm_mb() is not None
    stop = threading.Event()
    sampled = [_rss_mb()]

    def sample() -> None:
        while not stop.wait(0.002):
            sampled[0] = max(sampled[0], _rss_mb())

    sampler = None if kernel else threading.Thread(target=sample, daemon=True)
    if sampler:
        sampler.start()
    try:
        yield out
    finally:
        stop.set()
        if sampler:
            sampler.join()
        peak = _vm_hwm_mb() if kernel else None
        out["peak_mb"] = max(peak if peak is not None else 0.0, sampled[0], _rss_mb())
        out["method"] = "VmHWM after clear_refs" if kernel else "psutil sampling every 2 ms"


def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load, warm up, record RSS, run one IG under a peak-RSS watch, then time a second one."""
    import gc

    from benchmarks.reference import reference_attribute
    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.models import load_model

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    lm = load_model(spec["model"], device=spec.get("device"), dtype=spec.get("dtype"))
    example = encode_example(lm, IG_PROMPT, IG_CHOSEN, IG_REJECTED)
    with torch.no_grad():  # warm the forward kernels (oneDNN primitives, mask builders) before measuring
        ids = torch.tensor([example.sequence_ids("plus")], device=lm.adapter.input_device)
        lm.model(input_ids=ids, use_cache=False)
    gc.collect()
    after_load = _rss_mb()
    steps = spec["steps"]

    def run() -> tuple[list[float], float, int]:  # scores, seconds, chunk size
        if spec["impl"] == "reference":
            ref = reference_attribute(lm, example, steps=steps, points=spec.get("points", "graded"))
            return ref.plus_scores + ref.minus_scores, ref.seconds, 1
        res = attribute_example(lm, example, steps=steps, chunk_size=spec.get("chunk_size"),
                                points=spec.get("points", "graded"))
        return res.plus_scores + res.minus_scores, res.seconds, res.chunk_size

    with _peak_rss() as peak:
        scores, first, chunk = run()
    process = time.process_time()
    warm = run()[1]  # the time that counts: a warm process, as in the app (the first run pays page faults)
    cpu = time.process_time() - process
    return {"after_load_mb": after_load, "peak_mb": peak["peak_mb"], "extra_mb": peak["peak_mb"] - after_load,
            "memory_method": peak["method"], "seconds": warm, "first_seconds": first, "cpu_seconds": cpu,
            "scores": scores, "chunk_size": chunk, "threads": torch.get_num_threads()}


def _probe_main() -> None:
    """Entry point of the subprocess: spec as JSON in argv[1], result as the last line of stdout."""
    import logging

    logging.disable(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    result = _probe(json.loads(sys.argv[1]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


def _run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `_probe` in a fresh Python process (so its peak RSS is its own) and return its result."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    code = "from benchmarks.memory_probe import _probe_main; _probe_main()"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=root, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the {spec['impl']} IG subprocess failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
