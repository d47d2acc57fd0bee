"""The hallucination check (grains.vlm.check): POPE metrics on hand-made answers, the absent-object proposal (never a
present object, also property-based), the build/check split (never overlapping), the McNemar power note, the report's
renderings, the patch heatmap of one probe, and steer-and-re-check on a tiny random VLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grains.errors import InputError
from grains.models import load_model
from grains.vlm.check import (
    MAX_OBJECTS,
    CheckRun,
    Probe,
    ProbeAnswer,
    check_image,
    compare_runs,
    load_vocabulary,
    make_probes,
    min_discordant_to_reject,
    object_key,
    parse_objects,
    propose_absent,
    resolve_objects,
    shipped_probes,
    split_probes,
    steer_and_recheck,
    steering_factory,
    where_the_model_looked,
)
from grains.vlm.pope import probe_metrics

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "assets" / "images" / "coffee.jpg"
VOCAB = load_vocabulary()


def answer(obj: str, truth: str, said: str, p_yes: float = 0.5) -> ProbeAnswer:
    lp_yes, lp_no = math.log(p_yes), math.log(1 - p_yes)
    probe = Probe(object=obj, truth=truth, question=f"Is there a {obj} in the image?", id=f"x:{obj}")
    return ProbeAnswer(probe=probe, answer=said, p_yes=p_yes, logp_yes=lp_yes, logp_no=lp_no)


def run_of(answers: list[ProbeAnswer]) -> CheckRun:
    return CheckRun(answers=answers, metrics=probe_metrics([a.answer for a in answers],
                                                           [a.probe.truth for a in answers]))


# ------------------------------------------------------------------ metrics on hand-made answers


def test_pope_metrics_and_flags_on_hand_made_answers():
    answers = [answer("cup", "yes", "yes"), answer("spoon", "yes", "no"), answer("saucer", "yes", "yes"),
               answer("fork", "no", "yes"), answer("laptop", "no", "no"), answer("cat", "no", "yes")]
    # by hand: TP = cup, saucer (2); FN = spoon (1); FP = fork, cat (2); TN = laptop (1)
    m = probe_metrics([a.answer for a in answers], [a.probe.truth for a in answers])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 2, 1)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["yes_ratio"] == pytest.approx(4 / 6)
    assert [a.hallucination for a in answers] == [False, False, False, True, False, True]
    assert [a.correct for a in answers] == [True, False, True, False, True, False]


def test_mcnemar_power_note_and_minimum_discordant():
    assert min_discordant_to_reject(0.05) == 6  # 2 * 0.5**5 = 0.0625, 2 * 0.5**6 = 0.03125
    assert min_discordant_to_reject(0.01) == 8
    # 6 probes, all wrong unsteered and all right steered: 6 discordant -> p = 2 / 64 < 0.05
    before = run_of([answer(f"o{i}", "no", "yes") for i in range(6)])
    after = run_of([answer(f"o{i}", "no", "no") for i in range(6)])
    cmp = compare_runs(before, after)
    assert cmp["discordant"] == 6 and cmp["p_value"] == pytest.approx(2 / 64) and cmp["can_reject"]
    assert cmp["significant"] and cmp["power_note"] == ""
    # 5 flips in 10 probes: the best possible p is 0.0625, and the report says so
    before = run_of([answer(f"o{i}", "no", "yes" if i < 5 else "no") for i in range(10)])
    after = run_of([answer(f"o{i}", "no", "no") for i in range(10)])
    cmp = compare_runs(before, after)
    assert cmp["p_value"] == pytest.approx(0.0625) and not cmp["can_reject"] and not cmp["significant"]
    assert "fewer than 6 discordant" in cmp["power_note"]
    # 4 probes: can never reject, whatever happens
    small = compare_runs(run_of([answer("a", "no", "yes")] * 4), run_of([answer("a", "no", "no")] * 4))
    assert "With 4 probes" in small["power_note"] and small["p_value"] == pytest.approx(0.125)


# ------------------------------------------------------------------ names and the proposal


@pytest.mark.parametrize("a, b", [("Dogs", "dog"), ("a Wine Glasses", "wine glass"), ("teddy-bears", "teddy bear"),
                                  ("Buses", "bus"), ("knives", "knife"), ("People", "person"), ("boxes", "box"),
                                  ("horses", "horse"), ("  CUP ", "cup"), ("skis", "ski"), ("Ponies", "pony")])
def test_object_key_ignores_case_plural_and_articles(a, b):
    assert object_key(a) == object_key(b)


def test_vocabulary_is_the_80_coco_names_with_a_labelled_table():
    assert len(VOCAB.objects) == 80 and len(set(VOCAB.objects)) == 80
    assert {"person", "traffic light", "hair drier", "toothbrush", "dining table"} <= set(VOCAB.objects)
    assert sorted(VOCAB.popularity) == sorted(VOCAB.objects) and VOCAB.popularity[0] == "person"
    assert "not measured on COCO" in VOCAB.notice
    assert VOCAB.cooccurrence["fork"]["knife"] > VOCAB.cooccurrence["fork"].get("giraffe", 0)
    assert all(VOCAB.cooccurrence[a].get(b) == VOCAB.cooccurrence[b].get(a) for a in VOCAB.objects
               for b in VOCAB.objects)
    notice = (ROOT / "assets" / "NOTICE.md").read_text()
    assert "object_vocabulary.json" in notice and "not measured on COCO" in notice


def test_the_three_settings():
    popular = propose_absent(["cat"], "popular", 3)
    assert popular.objects == ["person", "car", "chair"]
    adversarial = propose_absent(["fork", "Cups"], "adversarial", 4)
    # POPE ranks by raw co-occurrence counts, so the ubiquitous "person" comes first, then the table-ware
    assert adversarial.objects[0] == "person" and "knife" in adversarial.objects
    together = {o: VOCAB.cooccurrence["fork"].get(o, 0) + VOCAB.cooccurrence["cup"].get(o, 0) for o in VOCAB.objects}
    assert min(together[o] for o in adversarial.objects) >= max(
        together[o] for o in VOCAB.objects if o not in adversarial.objects + ["fork", "cup"])
    assert together["giraffe"] == 0 and together["spoon"] > 0
    scores = adversarial.scores
    assert all(scores[o] > 0 for o in adversarial.objects)
    assert "cup" not in adversarial.objects and "fork" not in adversarial.objects
    r1, r2 = propose_absent(["cat"], "random", 5, seed=3), propose_absent(["cat"], "random", 5, seed=3)
    assert r1.objects == r2.objects and len(set(r1.objects)) == 5
    assert propose_absent(["cat"], "random", 5, seed=4).objects != r1.objects
    unknown = propose_absent(["pagoda"], "adversarial", 2)
    assert unknown.objects == ["person", "car"] and any("pagoda" in n for n in unknown.notes)
    assert propose_absent(["cat", "dog"], "popular").objects == ["person", "car"]  # default: balanced with present
    with pytest.raises(InputError, match="setting"):
        propose_absent(["cat"], "hard")


def test_proposal_never_proposes_a_present_object_even_by_synonym_or_plural():
    present = ["People", "SOFA", "mugs", "Tables", "TV", "red car", "a Bike", "fridge"]
    for setting in ("random", "popular", "adversarial"):
        proposed = propose_absent(present, setting, 40, seed=1).objects
        banned = {"person", "couch", "cup", "dining table", "tv", "car", "bicycle", "refrigerator"}
        assert not banned & set(proposed), setting
        assert len(proposed) == 40


_VARIANTS = st.sampled_from(sorted(set(VOCAB.objects) | {s for s in VOCAB.synonyms}))


def _disguise(name: str, upper: bool, plural: bool, article: bool) -> str:
    word = name + ("s" if plural and not name.endswith(("s", "x", "ch", "sh")) else "")
    word = word.upper() if upper else word.title()
    return ("a " if article else "") + word


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_VARIANTS, st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=12),
       st.sampled_from(["random", "popular", "adversarial"]), st.integers(1, 50), st.integers(0, 10_000))
def test_property_no_proposed_object_is_listed_as_present(items, setting, n, seed):
    present = [_disguise(*item) for item in items]
    proposal = propose_absent(present, setting, n, seed=seed)
    assert len(proposal.objects) == len(set(proposal.objects))
    present_keys = {object_key(p) for p in present}
    present_canon = {VOCAB.canonical(p) for p in present} - {None}
    for obj in proposal.objects:
        assert object_key(obj) not in present_keys
        assert obj not in present_canon
    # and the probes built from them never clash
    make_probes(None, present, proposal.objects, digest="d")


def test_object_lists_are_checked():
    assert parse_objects("cup, , Cups,spoon", "present") == ["cup", "spoon"]
    with pytest.raises(InputError, match="500 present objects"):
        parse_objects(",".join(f"o{i}" for i in range(500)), "present")
    with pytest.raises(InputError, match="limit is 60"):
        parse_objects(["x" * 61], "absent")
    with pytest.raises(InputError, match="at least one object"):
        resolve_objects("", "", None)
    with pytest.raises(InputError, match="not both"):
        resolve_objects("cup", "fork", "random")
    with pytest.raises(InputError, match="both as present and as absent"):
        resolve_objects("Cups", "cup")
    with pytest.raises(InputError, match="same object"):
        resolve_objects("sofa", "couch")
    present, absent, proposal = resolve_objects("cup, spoon", None, "adversarial")
    assert present == ["cup", "spoon"] and len(absent) == 2 and proposal.setting == "adversarial"
    assert MAX_OBJECTS == 50


# ------------------------------------------------------------------ the split


def _probes(n_yes: int, n_no: int, digest: str = "d") -> list[Probe]:
    return make_probes(None, [f"yes{i}" for i in range(n_yes)], [f"no{i}" for i in range(n_no)], digest=digest)


@pytest.mark.parametrize("n_yes, n_no", [(1, 1), (2, 2), (3, 5), (10, 1), (0, 4), (7, 7)])
def test_split_never_overlaps_and_covers_every_probe(n_yes, n_no):
    probes = _probes(n_yes, n_no)
    for seed in range(5):
        build, check = split_probes(probes, 0.5, seed)
        ids_b, ids_c = {p.id for p in build}, {p.id for p in check}
        assert not ids_b & ids_c
        assert ids_b | ids_c == {p.id for p in probes}
        assert build and check
        if n_yes >= 2 and n_no >= 2:
            assert {p.truth for p in check} == {"yes", "no"} and {p.truth for p in build} == {"yes", "no"}


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 20), st.integers(0, 20), st.floats(0.05, 0.95), st.integers(0, 1000))
def test_property_split_never_overlaps(n_yes, n_no, share, seed):
    probes = _probes(n_yes, n_no)
    if len(probes) < 2:
        with pytest.raises(InputError):
            split_probes(probes, share, seed)
        return
    build, check = split_probes(probes + probes[:3], share, seed)  # duplicates are one probe
    assert not {p.id for p in build} & {p.id for p in check}
    assert len(build) + len(check) == len(probes)


def test_shipped_build_probes_leave_out_the_checked_photo():
    from grains.images import load_image
    from grains.vlm.check import image_digest

    digest = image_digest(load_image(COFFEE))
    picked, left_out = shipped_probes(digest, limit=64)
    assert left_out == 6  # the six coffee.jpg rows of pope_style.jsonl
    assert all(not p.id.startswith(digest) for p in picked)
    assert len(picked) == 36 - 6
    some, _ = shipped_probes(digest, limit=8)
    assert len(some) == 8 and sum(p.truth == "yes" for p in some) == 4


# ------------------------------------------------------------------ on a tiny random VLM


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny-random-llava")


def test_check_image_report(lm):
    report = check_image(lm, str(COFFEE), present=["cup", "spoon"], absent="fork, laptop")
    data = report.to_dict()
    assert data["n"] == 4 and data["random_weights"] is True and data["steered"] is None
    assert [p["object"] for p in data["probes"]] == ["cup", "spoon", "fork", "laptop"]
    assert [p["truth"] for p in data["probes"]] == ["yes", "yes", "no", "no"]
    for p in data["probes"]:
        assert 0 < p["p_yes"] < 1 and p["answer"] == ("yes" if p["logp_yes"] > p["logp_no"] else "no")
        assert p["p_yes"] == pytest.approx(1 / (1 + math.exp(p["logp_no"] - p["logp_yes"])))
        assert p["hallucination"] == (p["truth"] == "no" and p["answer"] == "yes")
        assert p["question"] == f"Is there a {p['object']} in the image?"
    m = probe_metrics([p["answer"] for p in data["probes"]], [p["truth"] for p in data["probes"]])
    assert data["unsteered"]["accuracy"] == m["accuracy"] and data["unsteered"]["f1"] == m["f1"]
    assert json.loads(report.to_json())["n"] == 4
    html = report._repr_html_()
    assert "<table>" in html and "Random weights" in html and "fork" in html
    text = str(report)
    assert "RANDOM WEIGHTS" in text and "laptop" in text
    # what "absent" means: not in the user's list; the picture is not checked (library, CLI text, JSON, app view)
    from components.views.hallucination import summary_html

    for shown in (text, html, data["absent_means"], summary_html(data)):
        assert "not in your list" in shown and "check the picture" in shown


def test_report_renders_user_text_as_text(lm):
    report = check_image(lm, str(COFFEE), present=["<b>cup</b>"], absent=["<script>x</script>"])
    html = report._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_steering_goes_through_the_factory_and_is_compared(lm, monkeypatch):
    import torch

    from grains.steering import Steering
    from grains.vectors import SteeringVector

    vector = SteeringVector(directions={i: torch.ones(lm.hidden_size) for i in range(lm.num_layers)},
                            layer_norms={i: 1.0 for i in range(lm.num_layers)}, model_id=lm.model_id,
                            hidden_size=lm.hidden_size, num_layers=lm.num_layers, default_layer=1,
                            default_strength=0.5)
    entered = []
    real_apply = Steering.apply

    def counting_apply(self, model, rows=None):
        entered.append(model)
        return real_apply(self, model, rows)

    monkeypatch.setattr(Steering, "apply", counting_apply)
    report = check_image(lm, str(COFFEE), present=["cup"], absent=["fork"],
                         steering=Steering.create(lm, vector, 1, 0.5))
    assert len(entered) == 2  # once per probe, steered run only
    assert report.comparison["n"] == 2 and 0.0 <= report.comparison["p_value"] <= 1.0
    assert "With 2 probes" in report.comparison["power_note"]
    assert report.steering["strength"] == 0.5
    with pytest.raises(InputError):
        steering_factory(lm, "not a vector")
    import torch

    other = SteeringVector(directions={0: torch.ones(7)}, layer_norms={0: 1.0}, model_id="x", hidden_size=7,
                           num_layers=2, method="mean", k=1, n_examples=1, default_layer=0, default_strength=0.5)
    with pytest.raises(Exception, match="hidden size"):
        check_image(lm, str(COFFEE), present=["cup"], absent=["fork"], steering=other)


def test_text_only_model_and_bad_image_are_refused(lm, tmp_path):
    text = load_model("tiny-random-llama")
    with pytest.raises(InputError, match="text-only"):
        check_image(text, str(COFFEE), present=["cup"], absent=["fork"])
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    from grains.errors import ImageError

    with pytest.raises(ImageError):
        check_image(lm, str(bad), present=["cup"], absent=["fork"])


def test_where_the_model_looked_is_truthful_vs_other_ig(lm):
    absent = where_the_model_looked(lm, str(COFFEE), "fork", truth="no", steps=4)
    assert (absent.chosen, absent.rejected) == ("No", "Yes")
    assert absent.probe.question == "Is there a fork in the image?"
    r = absent.result
    assert r.image_grid is not None and len(r.image_grid) == 6 and len(r.image_grid[0]) == 6
    total = sum(r.plus_scores) + sum(r.minus_scores)
    assert total - (r.f_input - r.f_baseline) == pytest.approx(r.delta, abs=1e-4)
    present = where_the_model_looked(lm, str(COFFEE), "cup", truth="yes", steps=4)
    assert (present.chosen, present.rejected) == ("Yes", "No")
    # f is log P(truth) - log P(other): the two probes' f have the scoring's signs
    from grains.images import load_image
    from grains.vlm.pope import score_yes_no

    lp_yes, lp_no = score_yes_no(lm, load_image(COFFEE), "Is there a fork in the image?")
    assert absent.result.f_input == pytest.approx(lp_no - lp_yes, abs=1e-3)
    img = absent.overlay(str(COFFEE))
    assert img.size == (600, 400)
    assert absent.summary()["grid_shape"] == [6, 6]
    with pytest.raises(InputError):
        where_the_model_looked(lm, str(COFFEE), "fork")


@pytest.mark.parametrize("source", ["user", "shipped"])
def test_steer_and_recheck_keeps_a_disjoint_split(lm, source):
    report = steer_and_recheck(lm, str(COFFEE), present="cup, spoon, saucer", absent="fork, laptop, cat",
                               source=source, max_build=6, steps=2, strength=0.5)
    split = report.split
    assert not set(split["build_ids"]) & set(split["check_ids"])
    assert [a.probe.id for a in report.unsteered.answers] == split["check_ids"]
    assert [a.probe.id for a in report.steered.answers] == split["check_ids"]
    assert report.steering["strength"] == 0.5 and report.comparison["n"] == split["n_check"]
    if source == "user":
        assert split["n_build"] == 2 and split["n_check"] == 4
    else:
        assert split["n_build"] == 6 and split["n_check"] == 6 and split["left_out_same_photo"] == 6
    assert report.vector is not None and report.vector.n_examples == split["n_build"]
    data = report.to_dict()
    assert data["split"]["note"].endswith("no probe is in both.")
    assert data["side_effects"]["answer_mass"] > 0
    # steering at strength 0.5 changes the probabilities of a random model (the hook reached the probes)
    assert any(abs(u.p_yes - s.p_yes) > 1e-6 for u, s in zip(report.unsteered.answers, report.steered.answers))
