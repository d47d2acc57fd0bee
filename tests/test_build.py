"""Vector building and honest selection: deltas, methods, cross-validation without leaks, noise loses to 0."""

import pytest
import torch

from grains.build import build_vector, default_layers
from grains.data import PreferenceExample
from grains.errors import Cancelled, InputError
from grains.evaluation import evaluate
from grains.models import load_model
from grains.selection import cross_validate, make_folds
from grains.steering import active_hook_count

EXAMPLES = [
    PreferenceExample("What is the capital of France?", "Paris.", "London."),
    PreferenceExample("Is the sky blue?", "Yes it is.", "No, it is green."),
    PreferenceExample("Which animal barks?", "A dog.", "A fish."),
    PreferenceExample("What color is grass?", "Green.", "Purple."),
    PreferenceExample("How many legs does a cat have?", "Four.", "Seven."),
    PreferenceExample("Is fire hot?", "Yes.", "No."),
]


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny-random-llama")


@pytest.mark.parametrize("method", ["grains", "pca", "mean", "caa"])
def test_build_gives_a_vector_per_layer(lm, method, tmp_path):
    result = build_vector(lm, EXAMPLES, method=method, k=2, steps=4, folds=3)
    vector = result.vector
    assert vector.layers == list(range(lm.num_layers))
    assert all(torch.isfinite(v).all() and v.norm() > 0 for v in vector.directions.values())
    assert all(n > 0 for n in vector.layer_norms.values())
    assert vector.default_layer in range(lm.num_layers)
    assert vector.meta["selection"]["folds"] == 3
    assert result.summary()["n_examples"] == len(EXAMPLES)
    vector.save(tmp_path / "v.safetensors")
    assert active_hook_count(lm) == 0


def test_caa_equals_mean_hidden_difference(lm):
    from grains.ablation import caa_deltas
    from grains.encoding import encode_example

    result = build_vector(lm, EXAMPLES[:2], method="caa", select=False)
    manual = sum(caa_deltas(lm, encode_example(lm, e.prompt, e.chosen, e.rejected)).caa for e in EXAMPLES[:2]) / 2
    for layer in range(lm.num_layers):
        torch.testing.assert_close(result.vector.directions[layer], manual[layer])


def test_ablation_deltas_vanish_when_nothing_is_ablated(lm):
    from grains.ablation import ablation_deltas
    from grains.encoding import encode_example
    from grains.topk import TokenSelection

    ex = encode_example(lm, "Is fire hot?", "Yes.", "No.")
    empty = {"plus": TokenSelection([], []), "minus": TokenSelection([], [])}
    deltas = ablation_deltas(lm, ex, empty)
    assert deltas.d_plus.abs().max() == 0 and deltas.d_minus.abs().max() == 0
    some = {"plus": TokenSelection([3], [4]), "minus": TokenSelection([3], [4])}
    assert ablation_deltas(lm, ex, some).d_plus.abs().max() > 0


def test_single_example_uses_defaults_and_says_so(lm):
    result = build_vector(lm, EXAMPLES[:1], k=2, steps=4)
    assert result.selection is None
    assert "not cross-validated" in result.vector.meta["note"]


def test_folds_are_disjoint_and_cover_everything():
    folds = make_folds(10, 3, seed=1)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(10))
    assert all(set(a).isdisjoint(b) for a in folds for b in folds if a is not b)


def test_cross_validation_never_builds_with_the_scoring_fold():
    seen = []

    def build(train):
        return set(train)

    def score(vector, layer, strength, idx):
        if vector is not None:
            seen.append((vector, tuple(idx)))
        return [0.0] * len(idx)

    cross_validate(9, [0, 1], [0.5], build, score, folds=3)
    assert seen and all(vector.isdisjoint(idx) for vector, idx in seen)


def test_a_planted_leak_is_caught():
    """A 'vector' that memorises the items it was built from looks perfect when it may see the scoring fold;
    cross-validation must show it learned nothing that generalises."""
    truth = [1.0 if i % 2 else -1.0 for i in range(12)]

    def build(train):
        return {i: truth[i] for i in train}  # memorised answers of the training items only

    def score(vector, layer, strength, idx):
        if vector is None:
            return [0.0] * len(idx)
        # a leak would show up as knowing the held-out answers; honest CV gives the memoriser nothing for them
        return [strength * vector.get(i, 0.0) * truth[i] for i in idx]

    honest = cross_validate(12, [0], [1.0], build, score, folds=3)
    assert honest.margin_gain == 0.0 and not honest.beats_unsteered

    def leaky_build(train):
        return {i: truth[i] for i in range(12)}  # the planted leak: built from every item

    leaky = cross_validate(12, [0], [1.0], leaky_build, score, folds=3)
    assert leaky.beats_unsteered and leaky.margin_gain == pytest.approx(1.0)


def test_strength_zero_wins_on_a_noise_vector():
    """Scores that only get worse with strength: strength 0 must be chosen and the note must say so."""
    def score(vector, layer, strength, idx):
        return [-strength * (1 + (i % 3)) for i in idx]

    selection = cross_validate(9, [0, 1, 2], [0.1, 0.5, 1.0], lambda train: object(), score, folds=3)
    assert selection.strength == 0.0 and not selection.beats_unsteered
    assert "No layer and strength beat the unsteered model" in selection.note


def _peaked_score(best_layer, best_strength, calls):
    """Margins that peak at one cell (layer, strength) and fall off with distance from it."""
    def score(vector, layer, strength, idx):
        if vector is not None:
            calls.append((layer, strength))
        if vector is None or strength == 0:
            return [0.0] * len(idx)
        return [1.0 - abs(layer - best_layer) - abs(strength - best_strength) for _ in idx]
    return score


def test_coarse_search_finds_the_peak_with_fewer_cells():
    layers, strengths = [2, 4, 6, 8, 10, 12], [0.1, 0.25, 0.5, 1.0]
    coarse_calls, grid_calls = [], []
    coarse = cross_validate(9, layers, strengths, lambda train: object(), _peaked_score(6, 1.0, coarse_calls),
                            folds=3, search="coarse")
    grid = cross_validate(9, layers, strengths, lambda train: object(), _peaked_score(6, 1.0, grid_calls),
                          folds=3, search="grid")
    assert (coarse.layer, coarse.strength) == (grid.layer, grid.strength) == (6, 1.0)
    assert coarse.margin_gain == pytest.approx(grid.margin_gain)
    # 6 layers at the middle strength (0.25), then 3 more strengths at the 2 best layers, per fold
    assert len(set(coarse_calls)) == 6 + 2 * 3 and len(coarse_calls) == 3 * (6 + 2 * 3)
    assert len(set(grid_calls)) == 6 * 4
    assert {row["strength"] for row in coarse.table if row["layer"] == 2} == {0.25}


def test_coarse_search_still_rebuilds_without_the_scored_fold():
    seen = []

    def score(vector, layer, strength, idx):
        if vector is not None:
            seen.append((vector, tuple(idx)))
        return [0.0] * len(idx)

    cross_validate(12, [0, 1, 2], [0.5, 1.0, 2.0], lambda train: frozenset(train), score, folds=4, search="coarse")
    assert len(seen) == 4 * (3 + 2 * 2) and all(vector.isdisjoint(idx) for vector, idx in seen)


def test_unknown_search_is_refused(lm):
    with pytest.raises(InputError, match="search"):
        build_vector(lm, EXAMPLES, method="caa", search="random")


def test_per_item_rows_add_up_to_the_aggregate(lm):
    built = build_vector(lm, EXAMPLES, method="caa", select=False)
    result = evaluate(lm, EXAMPLES, "pairs", built.vector, layer=1, strength=1.0, per_item=True)
    items = result["items"]
    assert len(items) == result["n"] == len(EXAMPLES)
    assert result["accuracy"] == pytest.approx(sum(i["correct"] for i in items) / len(items))
    assert result["accuracy_unsteered"] == pytest.approx(sum(i["correct_unsteered"] for i in items) / len(items))
    assert result["margin"] == pytest.approx(sum(i["margin"] for i in items) / len(items))
    assert all(i["correct"] == (i["margin"] > 0) for i in items)
    assert 0.0 <= result["p_value"] <= 1.0 and result["gain_ci"][0] <= result["gain"] <= result["gain_ci"][1]


def test_evaluate_at_strength_zero_changes_nothing(lm):
    built = build_vector(lm, EXAMPLES, method="caa", select=False)
    result = evaluate(lm, EXAMPLES, "pairs", built.vector, layer=1, strength=0.0, per_item=True)
    assert all(i["margin"] == i["margin_unsteered"] for i in result["items"])
    assert result["p_value"] == 1.0


def test_cancel_and_bad_input(lm):
    with pytest.raises(Cancelled):
        build_vector(lm, EXAMPLES, should_stop=lambda: True)
    with pytest.raises(InputError, match="no examples"):
        build_vector(lm, [])
    with pytest.raises(InputError, match="method"):
        build_vector(lm, EXAMPLES, method="magic")
    with pytest.raises(InputError, match="at least 1"):
        build_vector(lm, EXAMPLES, k=0)
    assert active_hook_count(lm) == 0


def test_default_layers_spread_over_the_middle():
    assert default_layers(18) == sorted(set(default_layers(18)))
    assert min(default_layers(18)) >= 3 and max(default_layers(18)) <= 14
    assert default_layers(4) == [1, 2]
