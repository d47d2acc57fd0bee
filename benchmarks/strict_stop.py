"""What a strict stopping rule costs: refine the graded rule (worst panel first) until the sum of |panel errors| is
at most 5% of |f(x) - f(x')| (not only the signed delta, where panel errors cancel), cap 128 gradient points.
Gemma-3-270M, whole response, TruthfulQA rows given on the command line; one JSON line per row.

    OMP_NUM_THREADS=1 python -m benchmarks.strict_stop 21,23,25
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from grains.attribution import ContrastiveObjective, baseline_embeddings, choose_chunk_size, input_embeddings
from grains.data import load_any, truthfulqa_to_pairs
from grains.encoding import encode_example
from grains.integration import PathIntegrator
from grains.models import load_model
from grains.quadrature import make_panels

DATA = Path(__file__).resolve().parent.parent / "assets" / "data" / "truthfulqa.jsonl"


def strict_refine(integrator: PathIntegrator, tolerance: float = 0.05,
                  cap: int = 128) -> list[tuple[int, float, float]]:
    """Refine until sum |panel error| <= tolerance * |gap| or the cap; returns (gradient points, |delta| / |gap|,
    sum |panel error| / |gap|) after each step."""
    panels = make_panels(16, "graded")
    sums = {p: integrator.gradient_sums(*p.nodes()).integral for p in panels}
    f0, f1 = integrator.values([0.0, 1.0])
    gap = abs(f1 - f0)
    trace = []
    while True:
        edges = sorted({p.lo for p in panels} | {p.hi for p in panels})
        f_at = dict(zip(edges, integrator.values(edges)))
        errors = {p: sums[p] - (f_at[p.hi] - f_at[p.lo]) for p in panels}
        total = sum(abs(e) for e in errors.values())
        trace.append((integrator.gradient_evals, abs(sum(errors.values())) / gap, total / gap))
        worst = max(panels, key=lambda p: abs(errors[p]))
        if total <= tolerance * gap or integrator.gradient_evals + 2 * worst.n > cap:
            return trace
        i = panels.index(worst)
        halves = worst.split()
        panels = panels[:i] + list(halves) + panels[i + 1:]
        del sums[worst]
        for half in halves:
            sums[half] = integrator.gradient_sums(*half.nodes()).integral


def main() -> int:
    """One JSON line per row: seconds, gradient and forward points, the trace."""
    torch.set_num_threads(1)
    lm = load_model("gemma-3-270m")
    for row in (int(x) for x in sys.argv[1].split(",")):
        _, rows = load_any(str(DATA), limit=1, offset=row)
        ex = truthfulqa_to_pairs(rows)[0]
        enc = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
        inputs = input_embeddings(lm, enc)
        integrator = PathIntegrator(ContrastiveObjective(lm, enc, "sequence"), inputs,
                                    baseline_embeddings(lm, enc, inputs, "zero"), choose_chunk_size(lm, enc, 16))
        start = time.perf_counter()
        trace = strict_refine(integrator)
        print(json.dumps({"row": row, "seconds": time.perf_counter() - start, "gevals": integrator.gradient_evals,
                          "fevals": integrator.forward_evals, "trace": trace}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
