"""The fast fp32 route is adopted only after a check, can be forced off, and gives the strict route's numbers."""

from __future__ import annotations

import pytest
import torch

import grains.matmul_precision as mp


@pytest.fixture(autouse=True)
def _restore_route():
    before, strict, refused = mp.current(), mp._strict_requested, mp._refused
    yield
    mp._strict_requested, mp._refused = strict, refused
    if before in (mp.FAST, mp.STRICT):
        mp._set(before)


class _Model:
    def __init__(self, weight: torch.Tensor):
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.head.weight.data = weight

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.head


needs_flag = pytest.mark.skipif(mp.current() == "unavailable", reason="this PyTorch has no fp32_precision setting")


@needs_flag
def test_a_route_that_changes_the_products_is_refused_and_one_that_does_not_is_adopted(monkeypatch) -> None:
    model = _Model(torch.randn(64, 16))
    mp.set_strict_fp32(False)
    mp._refused = None
    monkeypatch.setattr(mp, "product_difference", lambda weight: 2e-3)  # what rounding inputs to bf16 gives
    note = mp.choose_cpu_matmul_precision(model)
    assert mp.current() == mp.STRICT and note is not None and "stay strict" in note and "2.0e-03" in note
    monkeypatch.setattr(mp, "product_difference", lambda weight: 1e-6)
    note = mp.choose_cpu_matmul_precision(model)  # one setting per process: a refusal is not undone by a later pass
    assert mp.current() == mp.STRICT and note is not None and "earlier model" in note
    mp._refused = None
    note = mp.choose_cpu_matmul_precision(model)
    assert mp.current() == mp.FAST and note is not None and "1.0e-06" in note


@needs_flag
def test_strict_fp32_when_asked_and_for_models_that_are_not_cpu_fp32() -> None:
    mp._refused = None
    mp.set_strict_fp32(True)
    assert mp.current() == mp.STRICT
    assert mp.choose_cpu_matmul_precision(_Model(torch.randn(64, 16))) is None and mp.current() == mp.STRICT
    mp.set_strict_fp32(False)
    assert mp.choose_cpu_matmul_precision(_Model(torch.randn(64, 16).to(torch.bfloat16))) is None
    assert mp.choose_cpu_matmul_precision(object()) is None


@needs_flag
def test_the_strict_context_restores_the_route_and_the_check_leaves_it_alone() -> None:
    mp._set(mp.FAST)
    with mp.strict_fp32():
        assert mp.current() == mp.STRICT
    assert mp.current() == mp.FAST
    difference = mp.product_difference(torch.randn(512, 64))
    assert mp.current() == mp.FAST and 0.0 <= difference < 1.0


@needs_flag
def test_the_embedded_model_scores_the_same_either_way(gemma) -> None:
    from grains.data import BUILTIN_DATASETS, load_truthfulqa
    from grains.item_scoring import BatchedItems

    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"])[:4]
    with mp.strict_fp32():
        strict = BatchedItems(gemma, questions, "truthfulqa").score(None)
    mp._set(mp.FAST)
    fast = BatchedItems(gemma, questions, "truthfulqa").score(None)
    # the loaded model's check decided the route; either way the numbers are fp32's up to rounding
    assert max(abs(a["margin"] - b["margin"]) for a, b in zip(strict, fast)) < 1e-3
    assert [a["mc1"] for a in strict] == [b["mc1"] for b in fast]


@needs_flag
def test_the_precision_benchmark_compares_the_two_routes_on_the_same_items() -> None:
    from benchmarks.precision_bench import run

    result = run("tiny-random-llama", n_pairs=3, n_questions=3, n_ig=1, n_build=6, rounds=1, variant="route")
    comparison = result["comparison"]
    assert result["variant"] == "route" and comparison["pairs"] == 3
    assert comparison["margin_max_abs_diff"] < 1e-3 * comparison["margin_mean_abs"]  # fp32 either way
    assert comparison["mc1_items_changed"] == 0 and comparison["same_chosen_cell"]
    assert mp.current() == mp.FAST  # the benchmark leaves the fast route on after its second half
