"""Vector building and honest selection: deltas, methods, cross-validation without leaks, noise loses to 0."""

import pytest
import torch

from grains.build import build_vector, default_layers
from grains.data import PreferenceExample
from grains.errors import Cancelled, InputError
from grains.evaluation import evaluate
from grains.steering import active_hook_count

EXAMPLES = [
    PreferenceExample("What is the capital of France?", "Paris.", "London."),
    PreferenceExample("Is the sky blue?", "Yes it is.", "No, it is green."),
    PreferenceExample("Which animal barks?", "A dog.", "A fish."),
    PreferenceExample("What color is grass?", "Green.", "Purple."),
    PreferenceExample("How many legs does a cat have?", "Four.", "Seven."),
    PreferenceExample("Is fire hot?", "Yes.", "No."),
]


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
    # where the time went: every phase that ran, none negative, together within the build's wall time
    timings = result.summary()["timings"]
    expected = {"ablation", "cross-validation"} | ({"attribution"} if method != "caa" else set())
    assert expected <= set(timings) and all(t >= 0 for t in timings.values())
    assert sum(timings.values()) <= result.seconds + 1e-6 and vector.meta["timings"].keys() == timings.keys()
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


def test_unknown_search_is_refused(lm):
    with pytest.raises(InputError, match="search"):
        build_vector(lm, EXAMPLES, method="caa", search="random")


def test_per_item_rows_add_up_to_the_aggregate(lm):
    built = build_vector(lm, EXAMPLES, method="caa", select=False)
    report = evaluate(lm, EXAMPLES, "pairs", built.vector, layer=1, strength=1.0, per_item=True)
    items = report.items
    assert len(items) == report.n == len(EXAMPLES)
    assert report.accuracy == pytest.approx(sum(i["correct"] for i in items) / len(items))
    assert report.accuracy_unsteered == pytest.approx(sum(i["correct_unsteered"] for i in items) / len(items))
    assert report.metrics["margin"] == pytest.approx(sum(i["margin"] for i in items) / len(items))
    assert all(i["correct"] == (i["margin"] > 0) for i in items)
    assert 0.0 <= report.p_value <= 1.0 and report.gain_ci[0] <= report.gain <= report.gain_ci[1]


def test_evaluate_at_strength_zero_changes_nothing(lm):
    built = build_vector(lm, EXAMPLES, method="caa", select=False)
    report = evaluate(lm, EXAMPLES, "pairs", built.vector, layer=1, strength=0.0, per_item=True)
    assert all(i["margin"] == i["margin_unsteered"] for i in report.items)
    assert report.p_value == 1.0


def test_cancel_and_bad_input(lm):
    with pytest.raises(Cancelled):
        build_vector(lm, EXAMPLES, should_stop=lambda: True)
    calls = []

    def after_collection() -> bool:  # false for every example, true from the side-effect budget phase on
        calls.append(1)
        return len(calls) > len(EXAMPLES)

    with pytest.raises(Cancelled):
        build_vector(lm, EXAMPLES, method="caa", kl_budget=0.5, should_stop=after_collection)
    assert len(calls) == len(EXAMPLES) + 1 and active_hook_count(lm) == 0  # stopped at the budget's first cell
    calls.clear()  # without cross-validation the side-effect report is the last phase: Stop is honoured there too
    with pytest.raises(Cancelled, match="side effects"):
        build_vector(lm, EXAMPLES, method="caa", select=False, should_stop=after_collection)
    assert len(calls) == len(EXAMPLES) + 1 and active_hook_count(lm) == 0
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


def test_caa_at_the_prompt_end_is_refused(lm):
    with pytest.raises(InputError, match="CAA cannot read at the prompt end"):
        build_vector(lm, EXAMPLES, method="caa", position="prompt", select=False)


def test_prompt_position_only_selects_tokens_before_the_read_position(lm):
    from grains.ablation import select_for_example
    from grains.attribution import attribute_example
    from grains.encoding import encode_example

    example = encode_example(lm, EXAMPLES[0].prompt, EXAMPLES[0].chosen, EXAMPLES[0].rejected)
    result = attribute_example(lm, example, steps=4)
    for position in ("prompt", "answer"):
        selections = select_for_example(example, result, 20, content_only=False, position=position)
        for which, sel in selections.items():
            read = example.read_position(which, position)
            assert all(i < read for i in sel.positive + sel.negative)
            assert not set(sel.positive) & set(sel.negative)
            assert len(example.sequence_ids(which)) - 1 not in sel.positive + sel.negative


def test_vector_keeps_what_it_is_made_of(lm, tmp_path):
    from grains.vectors import load_vector

    built = build_vector(lm, EXAMPLES, method="pca", k=2, steps=4, select=False, report_side_effects=False)
    stats = built.vector.direction_stats
    assert set(stats) == set(range(lm.num_layers))
    for info in stats.values():
        assert info["raw_norm"] >= 0 and -1.0001 <= info["cosine_plus_minus"] <= 1.0001
        assert 0 <= info["cancellation"] <= 1.0001
    again = load_vector(built.vector.save(tmp_path / "v.safetensors"))
    assert again.direction_stats == stats


def test_a_cancelled_direction_is_warned_about():
    from grains.vectors import SteeringVector

    vector = SteeringVector(directions={0: torch.ones(4)}, layer_norms={0: 10.0}, model_id="m", hidden_size=4,
                            num_layers=1, default_layer=0,
                            meta={"direction_stats": {"0": {"raw_norm": 0.007, "relative_norm": 0.0007,
                                                            "cosine_plus_minus": 0.9999, "cancellation": 0.004}}})
    warnings = vector.warnings()
    assert any("nearly cancelled" in w for w in warnings) and any("tiny" in w for w in warnings)


def test_build_reports_side_effects_and_budget(lm):
    built = build_vector(lm, EXAMPLES, method="caa", layers=[1, 2], strengths=[0.5, 4.0], search="grid",
                         kl_budget=0.05)
    summary = built.summary()
    excluded = summary["selection"]["excluded_cells"]
    assert all(cell["strength"] > 0 for cell in excluded)
    chosen = (summary["layer"], summary["strength"])
    assert not any((c["layer"], c["strength"]) == chosen for c in excluded)
    assert built.vector.meta["kl_budget"] == 0.05
    if summary["strength"] == 0:
        assert summary["side_effects"] is None  # nothing is steered, so nothing is measured
    else:
        assert summary["side_effects"]["kl_mean"] >= 0 and "reading" in summary["side_effects"]


def test_negative_strengths_are_refused_in_one_sentence_not_dropped(lm):
    """`--strengths -0.5,-1` used to be dropped silently: "best of 0" and "+0.000 nats, 95% CI +0.000 to +0.000"."""
    with pytest.raises(InputError, match="positive strengths only") as info:
        build_vector(lm, EXAMPLES, method="caa", layers=[1], strengths=[-0.5, -1.0], search="grid")
    assert "-0.5, -1" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="positive strengths only"):
        build_vector(lm, EXAMPLES, method="caa", layers=[1], strengths=[0.5, -1.0], search="grid")


def test_the_budget_is_screened_on_the_prompts_the_side_effects_report(lm):
    """Build screened cells on the first 24 neutral prompts and reported KL on all of them; an excluded cell's KL
    is now the figure `kl_meter` gives on the full set, and a chosen cell's reported KL is within the budget."""
    from grains.side_effects import KL_PROMPT_COUNT, kl_meter, load_neutral_prompts
    from grains.steering import Steering

    prompts = load_neutral_prompts(limit=26)  # more than the 24 the screen used to take
    built = build_vector(lm, EXAMPLES, method="caa", layers=[1, 2], strengths=[0.5, 4.0], search="grid",
                         kl_budget=0.02, neutral_prompts=prompts)
    excluded = [c for c in built.summary()["selection"]["excluded_cells"] if c["kl"] is not None]
    assert excluded
    meter = kl_meter(lm, prompts)
    for cell in excluded:
        at = Steering.create(lm, built.vector, cell["layer"], cell["strength"])
        assert cell["kl"] == pytest.approx(meter.mean(at), rel=1e-6)
    side = built.summary()["side_effects"]
    assert side is None or (side["n_prompts"] == 26 and side["kl_mean"] <= 0.02)
    assert len(kl_meter(lm).prompts) == KL_PROMPT_COUNT == len(load_neutral_prompts())


def test_the_card_says_how_many_attributions_converged(lm, tmp_path):
    """A GrAInS build reports, per example, whether its IG converged (by each attribution's own rule), on the card,
    in the summary and in the saved vector; a CAA build attributes nothing and says nothing about IG."""
    import html

    from grains.attribution import attribute_example
    from grains.encoding import encode_example
    from grains.vectors import load_vector

    result = build_vector(lm, EXAMPLES, method="grains", k=2, steps=64, select=False, report_side_effects=False)
    got = result.summary()["attribution_convergence"]
    statuses = []
    for ex in EXAMPLES:  # the same fixed rule, attributed alone: the counts are these results' own verdicts
        encoded = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
        statuses.append(attribute_example(lm, encoded, steps=64, points="graded", tolerance=None).convergence)
    assert "converged" in statuses and "not converged" in statuses  # at 64 points on this model: some of each
    assert got["examples"] == len(EXAMPLES) and got["points"] == [64]
    for status in ("converged", "gap too small to judge", "not converged"):
        assert got[status] == statuses.count(status)
    assert got["reading"].startswith(f"IG converged on {statuses.count('converged')} of {len(EXAMPLES)} examples")
    assert got["reading"] in result.to_text() and html.escape(got["reading"]) in result.to_html()
    result.vector.save(tmp_path / "v.safetensors")
    assert load_vector(tmp_path / "v.safetensors").meta["attribution_convergence"] == got
    caa = build_vector(lm, EXAMPLES, method="caa", select=False, report_side_effects=False)
    assert caa.summary()["attribution_convergence"] is None and "IG converged" not in caa.to_text()
