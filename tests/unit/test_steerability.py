"""Per-example steerability (grains.steerability): slopes from the plain path's margins, the anti-steerable share,
the difference vectors' agreement from full forwards, and where it is reported (build's vector card meta, eval)."""

from __future__ import annotations

import pytest
import torch

from grains.data import BUILTIN_DATASETS, load_pairs
from grains.models import load_model
from grains.prompts import encode_response
from grains.scoring import score_pairs
from grains.steerability import item_slopes, mean_pairwise_cosine, steerability
from grains.steering import Steering
from grains.vectors import SteeringVector


def test_slopes_and_cosine_by_hand():
    assert item_slopes([-1, 0, 1], [[-2, 0, 2], [1, 1, 1], [3, 1, -1]]) == pytest.approx([2.0, 0.0, -2.0])
    vectors = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    assert mean_pairwise_cosine(vectors) == pytest.approx((1 + 0 + 0) / 3)
    assert mean_pairwise_cosine(torch.tensor([[1.0, 1.0], [-1.0, -1.0]])) == pytest.approx(-1.0)


def test_steerability_matches_the_plain_path():
    lm = load_model("tiny-random-llama")
    pairs = load_pairs(BUILTIN_DATASETS["sentiment_pairs"], limit=5)
    gen = torch.Generator().manual_seed(3)
    vector = SteeringVector(directions={2: torch.randn(lm.hidden_size, generator=gen)}, layer_norms={2: 1.0},
                            model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers,
                            method="grains", k=5, n_examples=5)
    steering = Steering.create(lm, vector, 2, 1.0)
    info = steerability(lm, pairs, steering)
    columns = [[s.margin() for s in score_pairs(lm, pairs, steering.at(lm, strength=v) if v else None)]
               for v in info["strengths"]]
    slopes = item_slopes(info["strengths"], [[c[i] for c in columns] for i in range(len(pairs))])
    assert info["slopes"] == pytest.approx(slopes, abs=1e-5)
    assert info["anti_steerable_n"] == sum(s < 0 for s in slopes)
    assert 0 < info["anti_steerable_n"] < len(pairs)  # a random direction moves some items each way
    assert info["strengths"] == [0.0, -1.0, -0.5, 0.5, 1.0]
    # the agreement of h(prompt + chosen) - h(prompt + rejected) at layer 2's output, last token, from full forwards
    outputs = []
    handle = lm.adapter.layers[2].register_forward_hook(lambda m, a, o: outputs.append(o[0, -1].clone()))
    try:
        with torch.no_grad():
            for p in pairs:
                for answer in (p.chosen, p.rejected):
                    enc = lm.encode_prompt(p.prompt)
                    ids = enc.ids + encode_response(lm.tokenizer, answer, lm.prompt_style, after=enc.text).ids
                    lm.model(input_ids=torch.tensor([ids]))
    finally:
        handle.remove()
    diffs = torch.stack([outputs[2 * i] - outputs[2 * i + 1] for i in range(len(pairs))])
    assert info["difference_cosine_mean"] == pytest.approx(mean_pairwise_cosine(diffs), abs=1e-4)
    assert "anti-steerable" in info["reading"]
    # the build hands over its cross-validation's rows: the same figures, no new unsteered pass
    from grains.prefix_cache import CachedRows
    from grains.scoring import pair_rows

    cache = CachedRows(lm, pair_rows(lm, pairs), layers=[2])
    cache.logprob_sums()
    reused = steerability(lm, pairs, steering, cache=cache)
    assert reused["slopes"] == pytest.approx(info["slopes"], abs=1e-5)
    assert reused["difference_cosine_mean"] == pytest.approx(info["difference_cosine_mean"], abs=1e-5)
    assert cache.full_passes == 1


def test_reported_by_build_and_eval():
    from grains.build import build_vector
    from grains.evaluation import evaluate

    lm = load_model("tiny-random-llama")
    pairs = load_pairs(BUILTIN_DATASETS["sentiment_pairs"], limit=4)
    built = build_vector(lm, pairs, method="caa", layers=[1, 2], strengths=[0.5], kl_budget=None,
                         report_side_effects=False)
    info = built.vector.meta["steerability"]
    assert info["n"] == 4 and 0 <= info["anti_steerable_share"] <= 1 and "in-sample" in info["reading"]
    report = evaluate(lm, pairs, "pairs", built.vector, layer=2, strength=0.5, steerability=True).to_dict()
    assert report["steerability"]["n"] == 4 and "slopes" not in report["steerability"]
