"""`grains bench` on the tiny random model: every key is there and finite, and the two IG implementations agree.

No timing assertions: the machine is shared and the tiny model's timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from benchmarks.harness import add_bench_arguments, bench_command, format_table, run_bench, scaling_exponent
from benchmarks.reference import integration_points, reference_attribute

KEYS = [
    "ig_seconds", "ig_reference_seconds", "ig_speedup", "ig_max_rel_diff", "ig_peak_extra_mb",
    "ig_reference_peak_extra_mb", "ig_memory_ratio", "single_seconds", "pair_seconds", "sequential_seconds",
    "pair_ratio", "hook_overhead", "build_seconds_per_example", "eval_seconds_per_question", "ig_scaling_exponent",
]


@pytest.fixture(scope="module")
def result() -> dict:
    # one thread: two-thread OpenMP stalls badly when other jobs share the 2 cores; timings are not checked here
    return run_bench(model="tiny-random-llama", quick=True, progress=None, threads=1)


def test_every_key_present_and_finite(result: dict) -> None:
    for key in KEYS:
        assert key in result, key
        assert isinstance(result[key], float) and math.isfinite(result[key]), (key, result[key])
    machine = result["machine"]
    for key in ("threads", "device", "torch", "model"):
        assert key in machine
    assert machine["model"] == "tiny-random-llama"
    scaling = result["scaling"]
    assert len(scaling["tokens"]) == len(scaling["seconds"]) == 4
    assert all(math.isfinite(s) and s > 0 for s in scaling["seconds"])
    assert scaling["tokens"] == sorted(scaling["tokens"]) and scaling["tokens"][0] >= 32
    json.dumps(result, allow_nan=False)  # one JSON object, no NaN


def test_ig_implementations_agree(result: dict) -> None:
    assert result["ig_max_rel_diff"] < 1e-4


def test_table_shows_targets(result: dict) -> None:
    table = format_table(result)
    for key in ("ig_speedup", "pair_ratio", "hook_overhead", "ig_scaling_exponent"):
        assert key in table


@pytest.mark.parametrize("target", ["sequence", "last"])
@pytest.mark.parametrize("points", ["graded", "gauss-legendre", "midpoint"])
def test_reference_matches_engine_in_process(target: str, points: str) -> None:
    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.models import load_model
    from grains.steering import active_hook_count

    lm = load_model("tiny-random-llama")
    example = encode_example(lm, "Is the sky green?", " No, it is blue.", " Yes, it is green.")
    ours = attribute_example(lm, example, steps=6, target=target, points=points)
    ref = reference_attribute(lm, example, steps=6, target=target, points=points)
    a = torch.tensor(ours.plus_scores + ours.minus_scores)
    b = torch.tensor(ref.plus_scores + ref.minus_scores)
    assert float((a - b).abs().max() / b.abs().max()) < 1e-4
    assert ref.f_input == pytest.approx(ours.f_input, abs=1e-4)
    assert all(not p.requires_grad for p in lm.model.parameters())  # weights frozen again afterwards
    assert all(p.grad is None for p in lm.model.parameters())
    assert active_hook_count(lm) == 0


def test_integration_points() -> None:
    alphas, weights = integration_points(5, "gauss-legendre")
    assert sum(weights) == pytest.approx(1.0) and all(0 < a < 1 for a in alphas)
    alphas, weights = integration_points(4, "midpoint")
    assert alphas == [0.125, 0.375, 0.625, 0.875] and weights == [0.25] * 4


def test_scaling_exponent() -> None:
    tokens = [32, 64, 128, 256]
    assert scaling_exponent(tokens, [t * 0.01 for t in tokens]) == pytest.approx(1.0)
    assert scaling_exponent(tokens, [(t / 32) ** 2 for t in tokens]) == pytest.approx(2.0)


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    add_bench_arguments(parser)  # must not clash with an existing --model
    args = parser.parse_args(["--quick", "--json", "--model", "tiny-random-llama"])
    assert args.quick and args.json and args.model == "tiny-random-llama"
    assert callable(bench_command)


def test_time_to_converged_section(result: dict) -> None:
    conv = result["converged"]
    for name in ("engine", "reference", "captum"):
        assert math.isfinite(conv[name]["seconds"]) and conv[name]["seconds"] > 0, name
        assert math.isfinite(conv[name]["relative_delta"]), name
    assert conv["engine"]["gradient_evals"] >= 16
    assert "inseq" in conv
    assert result["converged_engine_vs_reference"] == pytest.approx(
        conv["engine"]["seconds"] / conv["reference"]["seconds"])
    thr = result["build_throughput"]
    assert thr["before_examples_per_minute"] > 0 and thr["after_examples_per_minute"] > 0
    assert thr["speedup"] == pytest.approx(thr["after_examples_per_minute"] / thr["before_examples_per_minute"])
    assert "time to a converged attribution" in format_table(result)


def test_captum_layer_ig_is_the_same_integral() -> None:
    # captum's LayerIntegratedGradients on the embedding lookup, 50 Gauss-Legendre steps, zero baseline with specials
    # kept, must reach the engine's delta on the same 50 nodes: the same objective and the same baseline.
    from benchmarks.harness import captum_layer_ig
    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.models import load_model

    lm = load_model("tiny-random-llama")
    example = encode_example(lm, "Is the sky green?", " No, it is blue.", " Yes, it is green.")
    theirs = captum_layer_ig(lm, example, n_steps=50)
    ours = attribute_example(lm, example, steps=50, points="gauss-legendre")
    assert theirs["delta"] == pytest.approx(ours.delta, abs=1e-5)
    assert theirs["relative_delta"] == pytest.approx(ours.relative_delta, rel=1e-3, abs=1e-6)


def test_bench_without_the_checkout_says_what_to_do(monkeypatch, capsys) -> None:
    # an installed wheel has no benchmarks/ folder: one line on stderr, a non-zero exit, no traceback
    from grains import cli

    monkeypatch.setattr(cli, "_bench_harness", lambda: None)
    code = cli.main(["bench", "--quick", "--model", "tiny-random-llama"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "benchmarks/" in err[0] and "clone the repository" in err[0]
    with pytest.raises(SystemExit) as exc:  # other commands still refuse unknown options
        cli.main(["presets", "--bogus"])
    assert exc.value.code == 2


def test_bench_harness_is_found_in_the_checkout() -> None:
    from grains import cli

    harness = cli._bench_harness()
    assert harness is not None and harness.bench_command is bench_command


def test_the_library_ships_no_benchmark() -> None:
    # the harness and its reference loop live in benchmarks/, outside the package; grains never imports them
    from pathlib import Path

    import grains

    package = Path(grains.__file__).parent
    assert not list(package.glob("bench*.py"))
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "from benchmarks" not in text and "import benchmarks" not in text, source
