"""The benchmark's targets and its plain-text table."""

from __future__ import annotations

import math
from typing import Any

# name: (comparison, threshold, what it means)
TARGETS: dict[str, tuple[str, float, str]] = {
    "ig_speedup": (">=", 10.0, "batched IG vs the step-by-step reference loop"),
    "ig_max_rel_diff": ("<=", 1e-3, "both IG implementations give the same scores"),
    "ig_memory_ratio": ("<=", 0.5, "extra RAM of batched IG / the reference's"),
    "pair_ratio": ("<=", 1.3, "steered+unsteered in one call / one unsteered row"),
    "hook_overhead": ("<=", 1.05, "steered generation / unsteered, same length"),
    "ig_scaling_exponent": ("<=", 1.3, "slope of log IG time vs log prompt tokens"),
    "converged_engine_vs_reference": ("<=", 1 / 3, "engine converged (defaults) / reference loop at 20 points"),
    "cv_cells_speedup": (">=", 3.0, "cross-validation cells per second, kept hidden states / plain path"),
    "eval_speedup": (">=", 2.0, "TruthfulQA questions per second (unsteered + steered), batched / plain path"),
}


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, (op, threshold, meaning) in TARGETS.items():
        value = result.get(name)
        ok = value is not None and math.isfinite(value) and (value >= threshold if op == ">=" else value <= threshold)
        out[name] = {"target": f"{op} {threshold:g}", "value": value, "met": bool(ok), "meaning": meaning}
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.1e}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the figures, with each target and whether it is met."""
    m = result["machine"]
    lines = [f"GrAInS bench: {m['model']} on {m['device']} ({m['dtype']}), {m['threads']} threads, torch {m['torch']}"
             f", {result['settings']['ig_steps']} IG points{' (quick)' if result['settings']['quick'] else ''}",
             ""]
    rows = [
        ("ig_seconds", "s"), ("ig_reference_seconds", "s"), ("ig_speedup", "x"), ("ig_max_rel_diff", ""),
        ("ig_peak_extra_mb", "MB"), ("ig_reference_peak_extra_mb", "MB"), ("ig_memory_ratio", ""),
        ("single_seconds", "s"), ("steered_seconds", "s"), ("pair_seconds", "s"), ("sequential_seconds", "s"),
        ("pair_ratio", ""), ("hook_overhead", ""), ("build_seconds_per_example", "s"),
        ("eval_seconds_per_question", "s"), ("ig_scaling_exponent", ""), ("converged_engine_vs_reference", ""),
        ("cv_cells_speedup", "x"), ("eval_speedup", "x"),
    ]
    targets = result.get("targets", {})
    lines.append(f"{'metric':30s} {'value':>10s}  {'target':10s} status")
    for key, unit in rows:
        target = targets.get(key)
        status = "" if target is None else ("met" if target["met"] else "MISSED")
        value = _fmt(result.get(key)) + (f" {unit}" if unit else "")
        lines.append(f"{key:30s} {value:>10s}  {target['target'] if target else '':10s} {status}")
    conv = result.get("converged")
    if conv:
        lines.append("")
        lines.append("time to a converged attribution (relative delta reached):")
        for name in ("engine", "reference", "captum", "inseq"):
            row = conv.get(name, {})
            if "seconds" in row:
                lines.append(f"  {name:10s} {row['seconds']:8.1f} s  delta {row['relative_delta']:7.1%}  "
                             f"{row['points']}")
            else:
                lines.append(f"  {name:10s} {row.get('error', 'n/a')}")
    thr = result.get("build_throughput")
    if thr:
        lines.append(f"build throughput: {thr['before_examples_per_minute']:.2f} examples/min at "
                     f"{thr['before_steps']} points before, {thr['after_examples_per_minute']:.2f} at "
                     f"{thr['after_steps']} now")
    for key, unit in (("cv_cells", "cells_per_second"), ("eval_reuse", "questions_per_second")):
        row = result.get(key)
        if row:
            lines.append(f"{key}: {row[f'before_{unit}']:.3g} {unit.replace('_', ' ')} before, "
                         f"{row[f'after_{unit}']:.3g} after ({row['speedup']:.2f}x); numbers apart by at most "
                         f"{row.get('max_abs_diff', row.get('max_abs_diff_mc2')):.1e}")
    sel = result.get("build_selection")
    if sel:
        lines.append(f"build with nested CV ({sel['examples']} rows, {sel['method']}): {sel['before_minutes']:.1f} min "
                     f"before, {sel['after_minutes']:.1f} min after ({sel['speedup']:.2f}x; "
                     f"{sel['after_examples_per_minute']:.2f} examples/min; same choice: {sel['same_choice']}); "
                     f"phases after: {sel['after_timings']}")
    sc = result["scaling"]
    lines.append("")
    lines.append(f"IG time vs prompt tokens ({sc.get('steps', '?')} points): " + ", ".join(
        f"{t} tok {s:.2f} s" for t, s in zip(sc["tokens"], sc["seconds"])))
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
