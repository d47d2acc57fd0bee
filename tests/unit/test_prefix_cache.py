"""The hidden-state cache below the steered layer (grains.prefix_cache) and the paths built on it give the plain
path's numbers (to 1e-5 in fp32): scoring, the cross-validation's score callback, KL on neutral prompts and
batched evaluation; the layers below the steered one are really skipped; a VLM keeps its plain path."""

from __future__ import annotations

import pytest
import torch

from grains.data import BUILTIN_DATASETS, load_pairs, load_truthfulqa
from grains.evaluation import _mc_item, _pair_item
from grains.item_scoring import BatchedItems, answers_of
from grains.models import load_model
from grains.prefix_cache import CachedRows
from grains.scoring import pair_rows, score_pairs
from grains.side_effects import NeutralKL, _last_logprobs
from grains.steering import Steering
from grains.vectors import SteeringVector


def _vector(lm, seed: int = 0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    layers = range(lm.num_layers)
    return SteeringVector(directions={la: torch.randn(lm.hidden_size, generator=gen) for la in layers},
                          layer_norms={la: 1.0 for la in layers}, model_id=lm.model_id, hidden_size=lm.hidden_size,
                          num_layers=lm.num_layers, method="grains", k=5, n_examples=2)


@pytest.fixture(scope="module")
def pairs():
    return load_pairs(BUILTIN_DATASETS["sentiment_pairs"], limit=5)


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-qwen2", "tiny-random-gemma3-text"])
def test_steered_scores_from_kept_states_equal_full_forwards(name, pairs):
    lm = load_model(name)
    vector = _vector(lm)
    cache = CachedRows(lm, pair_rows(lm, pairs), layers=[1])
    unsteered = [x for s in score_pairs(lm, pairs) for x in (s.logp_chosen, s.logp_rejected)]
    assert cache.logprob_sums() == pytest.approx(unsteered, abs=1e-5)
    subset = [7, 0, 3, 4]  # a fold: any subset, any order
    for layer in (1, lm.num_layers - 1):  # one kept at the first pass, one kept when first needed
        for normalize in (True, False):
            steering = Steering.create(lm, vector, layer, 1.5, normalize)
            plain = [x for s in score_pairs(lm, pairs, steering) for x in (s.logp_chosen, s.logp_rejected)]
            got = cache.logprob_sums(steering, subset)
            assert got == pytest.approx([plain[i] for i in subset], abs=1e-5)
            assert max(abs(plain[i] - unsteered[i]) for i in subset) > 1e-2  # steering moved them
    assert cache.full_passes == 1  # the unsteered scores once; every steered cell started above its layer
    assert cache.partial_passes >= 4


def test_layers_below_the_steered_one_are_skipped(pairs):
    lm = load_model("tiny-random-llama")
    cache = CachedRows(lm, pair_rows(lm, pairs), layers=[2])
    cache.logprob_sums()
    seen: list[bool] = []

    def passthrough(module, args, output):
        seen.append(torch.equal(output, args[0]))  # a skipped layer hands its input straight back

    handle = lm.adapter.layers[0].register_forward_hook(passthrough)
    try:
        cache.logprob_sums(Steering.create(lm, _vector(lm), 2, 1.0))
    finally:
        handle.remove()
    assert seen and all(seen)
    assert all("forward" not in layer.__dict__ for layer in lm.adapter.layers)  # their own forwards are back


def test_neutral_kl_from_kept_states_equals_full_forwards():
    lm = load_model("tiny-random-gemma3-text")
    meter = NeutralKL(lm, ["The weather today", "A short note about tables and chairs", "Once"])
    steering = Steering.create(lm, _vector(lm), 2, 2.0)
    with steering.apply(lm):
        steered = _last_logprobs(lm, meter.prompts)
    p = meter.unsteered.exp()
    plain = (p * (meter.unsteered - steered)).sum(-1).clamp_min(0).tolist()
    assert meter.per_prompt(steering) == pytest.approx(plain, abs=1e-5)
    assert meter.first(2).per_prompt(steering) == pytest.approx(plain[:2], abs=1e-5)
    assert min(plain) > 0
    # the layers asked for up front are kept by the unsteered pass: a steered cell there runs no layer below it
    early = NeutralKL(lm, meter.prompts, layers=[2])
    assert 2 in early._cache.hidden and early._cache.full_passes == 1
    assert early.per_prompt(steering) == pytest.approx(plain, abs=1e-5)
    assert early._cache.full_passes == 1 and early._cache.partial_passes >= 1


def test_batched_evaluation_equals_row_by_row(pairs):
    lm = load_model("tiny-random-qwen2")
    questions = load_truthfulqa(BUILTIN_DATASETS["truthfulqa"], limit=3)
    steering = Steering.create(lm, _vector(lm, 1), 2, 1.5)
    for kind, rows, one in (("truthfulqa", questions, _mc_item), ("pairs", pairs, _pair_item)):
        batched = BatchedItems(lm, rows, kind, layers=[2])
        assert batched.margins_only == (kind == "pairs")  # steered pairs: only what the two sides read apart
        for setting, normalize in ((None, True), (steering, True), (None, False), (steering, False)):
            got = batched.score(setting, length_normalize=normalize)
            with setting.apply(lm) if setting else torch.no_grad():
                want = [one(lm, row, normalize) for row in rows]
            for g, w in zip(got, want):
                # fp32 rounding: a whole sum of the tiny random model's log-probabilities reaches -150 nats
                assert g["margin"] == pytest.approx(w["margin"], abs=1e-5 if normalize else 5e-5, rel=1e-6)
                assert g["correct"] == w["correct"] and g["answer"] == w["answer"]
                for key in ("mc1", "mc2", "mc1_length_normalized", "mc2_length_normalized"):
                    if key in w:
                        assert g[key] == pytest.approx(w[key], abs=1e-5)
        if kind == "pairs":  # the steered margins from what the two sides read apart equal the whole sums' difference
            margins = [r["margin"] for r in batched.score(steering)]
            batched.margins_only = False
            assert margins == pytest.approx([r["margin"] for r in batched.score(steering)], abs=1e-5)
        if kind == "truthfulqa":  # MC1 choices listed again among the MC2 answers are scored once
            listed = sum(len(answers_of(kind, row)) for row in rows)
            assert len({a for r in batched.answer_rows for a in r}) == len(batched.cache.rows) < listed
    assert batched.cache.full_passes == 1


def test_build_score_callback_equals_plain_scoring(pairs):
    from grains.build import _margin_scorer

    lm = load_model("tiny-random-llama")
    vector = _vector(lm, 2)
    score, _ = _margin_scorer(lm, list(pairs), [1, 2], True)
    base = score(None, None, 0.0, [0, 1, 2, 3, 4])
    assert base == pytest.approx([s.margin() for s in score_pairs(lm, pairs)], abs=1e-5)
    steered = score(vector, 2, 0.5, [4, 1])
    plain = score_pairs(lm, [pairs[4], pairs[1]], Steering.create(lm, vector, 2, 0.5))
    assert steered == pytest.approx([s.margin() for s in plain], abs=1e-5)


def test_a_vlm_keeps_its_plain_path(pairs):
    from grains.evaluation import evaluate
    from grains.item_scoring import batchable

    lm = load_model("tiny-random-llava")
    cache = CachedRows(lm, [([1, 2, 3], [4, 5])], layers=[0])
    assert not cache.enabled and cache.wanted == [] and not batchable(lm, pairs, "pairs")
    steering = Steering.create(lm, _vector(lm), 1, 1.0)
    report = evaluate(lm, pairs[:2], "pairs", steering, per_item=True, steerability=True).to_dict()
    with steering.apply(lm):
        plain = [_pair_item(lm, p, False)["margin"] for p in pairs[:2]]
    assert [i["margin"] for i in report["items"]] == pytest.approx(plain, abs=1e-5)
    assert report["steerability"]["difference_cosine_mean"] is None  # no kept states on the plain path


def test_shared_prompts_run_once_packed(pairs):
    """Chosen and rejected share one copy of their prompt (grains.packing) and score as when run apart; a model whose
    sliding window is shorter than a packed row keeps one row per response."""
    lm = load_model("tiny-random-llama")
    rows = pair_rows(lm, pairs)
    packed = CachedRows(lm, rows)
    assert packed.packed and len(packed.groups) == len(pairs)
    apart = CachedRows(lm, rows, enabled=False)
    assert not apart.packed and len(apart.groups) == len(rows)
    assert packed.logprob_sums() == pytest.approx(apart.logprob_sums(), abs=1e-5)
    steering = Steering.create(lm, _vector(lm), 2, 1.0)
    assert packed.logprob_sums(steering, [3, 8]) == pytest.approx(apart.logprob_sums(steering, [3, 8]), abs=1e-5)
    windowed = load_model("tiny-random-gemma3-text")  # sliding window 16 tokens
    assert not CachedRows(windowed, pair_rows(windowed, pairs)).packed


def test_passes_are_bounded_by_the_positions_the_output_layer_reads(monkeypatch):
    """A pass holds as many rows as keep (positions read) x vocabulary under the bound: one long response beside
    short ones costs its own length, not the longest length times every row (the padded layout's count)."""
    from grains import prefix_cache

    rows = [([1, 2], [5] * 10), ([1], [6]), ([1, 3], [7]), ([4], [])]  # reads 10 + 1 + 1 + 1 (prompt end) = 13
    monkeypatch.setattr(prefix_cache, "TOKENS_PER_FORWARD", 10_000)
    monkeypatch.setattr(prefix_cache, "LOGIT_FLOATS_PER_FORWARD", 13 * 7)
    assert list(prefix_cache.chunks([0, 1, 2, 3], rows, 7)) == [[0, 1, 2, 3]]  # padded count: 4 x 11 x 7
    monkeypatch.setattr(prefix_cache, "LOGIT_FLOATS_PER_FORWARD", 12 * 7)
    assert list(prefix_cache.chunks([0, 1, 2, 3], rows, 7)) == [[0, 1, 2], [3]]
    monkeypatch.setattr(prefix_cache, "LOGIT_FLOATS_PER_FORWARD", 1)
    assert list(prefix_cache.chunks([0, 1, 2, 3], rows, 7)) == [[0], [1], [2], [3]]  # a row over the bound: alone
