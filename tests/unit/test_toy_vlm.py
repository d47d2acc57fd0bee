"""The toy VLM (grains.vlm.toy): a short run of scripts/train_toy_vlm.py reproduces the recipe (both losses fall, the
run is deterministic, the saved checkpoint loads through grains.load_model like a hub VLM and answers the probe
format), the patch labels of the auxiliary loss match the scene's masks, and the shipped weights (both models) load
by preset name, answer from the picture and show the planted bias against the control."""

from __future__ import annotations

import json
import math
import random

import grains
from grains.vlm.pope import evaluate_probes, score_yes_no
from grains.vlm.toy.probes import QUESTION, scene_probes
from grains.vlm.toy.scenes import PLANTED_PAIRS, make_scene
from grains.vlm.toy.shapes import KINDS
from grains.vlm.toy.training import QuestionBank, TrainingRecipe, image_features, patch_labels, prompt_ids
from tests.factories import load_script

HELDOUT = 1_000_000_000


def test_a_short_run_of_the_script_reproduces_the_recipe(tmp_path) -> None:
    argv = ["--out", str(tmp_path), "--steps", "30", "--scenes-per-step", "6", "--small", "--learning-rate", "0.01",
            "--only", "toy-vlm-shapes"]
    assert load_script("train_toy_vlm").main(argv) == 0
    folder = tmp_path / "toy-vlm-shapes"
    info = json.loads((folder / "training.json").read_text())
    losses, patch_losses = info["losses"], info["patch_label_losses"]
    assert len(losses) == 30 and info["distribution"] == "biased" and info["scene_seeds"] == [0, 179]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3  # the answers' cross-entropy falls
    assert sum(patch_losses[-3:]) < sum(patch_losses[:3])  # and so does the patch-label loss
    assert info["recipe"]["patch_label_weight"] == TrainingRecipe.patch_label_weight > 0
    lm = grains.load_model(str(folder))
    assert type(lm.model).__name__ == "LlavaForConditionalGeneration" and lm.prompt_format == "chat"
    assert lm.is_vlm and not lm.random_weights
    scene = make_scene(HELDOUT)
    question = QUESTION.format(object="moon")
    enc = lm.encode_prompt(question, image=scene.image)
    assert enc.ids == prompt_ids(lm.processor, question, scene.image)  # trained on exactly what the library asks
    assert sum(enc.image_mask) == 64  # an 8 x 8 patch grid on the 64 px scene
    lp_yes, lp_no = score_yes_no(lm, scene.image, question)
    assert math.exp(lp_yes) + math.exp(lp_no) > 0.5  # it learned to answer with Yes or No


def test_a_short_run_is_deterministic(tmp_path) -> None:
    """The same recipe gives the same losses, step for step (seeds fix the scenes, the questions and the weights)."""
    runs = []
    for name in ("a", "b"):
        argv = ["--out", str(tmp_path / name), "--steps", "4", "--scenes-per-step", "3", "--small", "--only",
                "toy-vlm-shapes-control"]
        assert load_script("train_toy_vlm").main(argv) == 0
        runs.append(json.loads((tmp_path / name / "toy-vlm-shapes-control" / "training.json").read_text()))
    assert runs[0]["losses"] == runs[1]["losses"] and runs[0]["patch_label_losses"] == runs[1]["patch_label_losses"]
    assert runs[0]["distribution"] == "unbiased" and runs[0]["planted_pairs"] == []


def test_patch_labels_mark_the_patches_each_kind_covers() -> None:
    scene = make_scene(HELDOUT + 7)
    labels = patch_labels(scene, 8, 0.1)
    label_map = scene.label_map()
    assert labels.shape == (64, len(KINDS))
    for i, obj in enumerate(scene.objects):
        column = labels[:, KINDS.index(obj.kind)].reshape(8, 8)
        for r in range(8):
            for c in range(8):
                share = (label_map[8 * r:8 * r + 8, 8 * c:8 * c + 8] == i + 1).mean()
                assert bool(column[r, c]) == (share >= 0.1)
    absent = [KINDS.index(k) for k in KINDS if k not in scene.kinds]
    assert labels[:, absent].sum() == 0


def test_training_reads_the_image_features_the_model_sees_at_inference() -> None:
    """The training path (patch features for the patch-label head, projected features for the decoder) gives exactly
    what LlavaModel.get_image_features gives the decoder at inference."""
    import torch

    from grains.vlm.toy.model import ToyVLMConfig, build_model

    model, processor = build_model(ToyVLMConfig(text_layers=1, vision_layers=1))
    pixels = processor.image_processor(images=[make_scene(HELDOUT + i).image for i in range(2)],
                                       return_tensors="pt")["pixel_values"]
    patches, projected = image_features(model, pixels)
    cfg = model.config
    reference = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=cfg.vision_feature_layer,
                                               vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                               return_dict=True)
    assert patches.shape == (2, 64, 128)
    assert torch.equal(projected, torch.stack(list(reference.pooler_output)))


def _answers(lm, seeds: range) -> dict[str, list[bool]]:
    """Said-yes flags per kind of probe over held-out scenes: present, planted B (A present, B absent), other
    absent."""
    out: dict[str, list[bool]] = {"present": [], "planted": [], "other absent": []}
    for seed in seeds:
        scene = make_scene(seed)
        for kind in KINDS:
            lp_yes, lp_no = score_yes_no(lm, scene.image, QUESTION.format(object=kind))
            if kind in scene.kinds:
                key = "present"
            elif any(b == kind and a in scene.kinds for a, b in PLANTED_PAIRS):
                key = "planted"
            else:
                key = "other absent"
            out[key].append(lp_yes > lp_no)
    return out


def test_the_shipped_models_answer_from_the_picture_and_only_the_biased_one_shows_the_plant() -> None:
    """Both shipped models load by preset name, put their answer's probability on Yes or No, and answer from the
    picture on held-out scenes (present objects mostly "yes", other absent ones mostly "no"); the biased model says
    "yes" to a planted B whose A is present far more often than the control does (docs/toy_vlm.md has the full
    tables on 150 scenes)."""
    said = {}
    for name in ("toy-vlm-shapes", "toy-vlm-shapes-control"):
        lm = grains.load_model(name)
        assert lm.model_id == name and type(lm.model).__name__ == "LlavaForConditionalGeneration"
        scene = make_scene(HELDOUT + 500)
        lp_yes, lp_no = score_yes_no(lm, scene.image, QUESTION.format(object=scene.kinds[0]))
        assert math.exp(lp_yes) + math.exp(lp_no) > 0.9
        said[name] = _answers(lm, range(HELDOUT + 500, HELDOUT + 560))
        rates = {k: sum(v) / len(v) for k, v in said[name].items()}
        # a model blind to the picture says "yes" as often to absent kinds as to present ones
        assert rates["present"] > 0.8 and rates["present"] - rates["other absent"] > 0.4, (name, rates)
    biased, control = said["toy-vlm-shapes"], said["toy-vlm-shapes-control"]
    assert len(biased["planted"]) >= 15
    planted_rate = sum(biased["planted"]) / len(biased["planted"])
    assert planted_rate > 0.8 and planted_rate > sum(biased["other absent"]) / len(biased["other absent"]) + 0.4
    assert planted_rate > sum(control["planted"]) / len(control["planted"]) + 0.15  # the plant, not a yes-habit


def test_the_probe_rows_of_a_scene_evaluate_end_to_end() -> None:
    lm = grains.load_model("toy-vlm-shapes")
    rows = []
    for seed in range(HELDOUT + 600, HELDOUT + 603):
        scene = make_scene(seed)
        rows += [dict(r, image=scene.image) for r in scene_probes(scene, "x.png") if r["setting"] != "popular"]
    result = evaluate_probes(lm, rows)
    assert result["n"] == len(rows) and 0.0 < result["yes_ratio"] < 1.0


def _absent_questions(bank: QuestionBank, scenes: list, share: float, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for scene in scenes:
        rows = bank.rows(scene, rng, 2, 0.0, share)
        out.append([prompt for prompt, answer in rows if answer == bank.no])
    return out


def test_the_partner_question_share_asks_about_the_missing_b_and_leaves_the_default_draws_alone() -> None:
    from grains.vlm.toy.model import ToyVLMConfig, build_model
    from grains.vlm.toy.scenes import BIASED

    _, processor = build_model(ToyVLMConfig(vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                                            text_layers=2, text_heads=2))
    scenes = [make_scene(seed, BIASED) for seed in range(400)]
    bank = QuestionBank(processor, scenes[0].image)
    missing = [i for i, s in enumerate(scenes)
               if any(a in s.kinds and b not in s.kinds for a, b in PLANTED_PAIRS)]
    assert len(missing) >= 5  # the plant leaves B out of about 1 in 10 scenes with A
    always = _absent_questions(bank, scenes, 1.0)
    for i in missing:
        partners = [bank.prompts[b] for a, b in PLANTED_PAIRS if a in scenes[i].kinds and b not in scenes[i].kinds]
        assert always[i][0] in partners
    # share 0 draws exactly as the recipe always did (the shipped models' question stream)
    rng = random.Random(0)
    before = []
    for scene in scenes:
        absent = [k for k in KINDS if k not in scene.kinds]
        rng.sample(scene.kinds, 1)
        before.append([bank.prompts[k] for k in rng.sample(absent, 1)])
        rng.random()  # the caption's draw
    assert _absent_questions(bank, scenes, 0.0) == before
    never = sum(always_i != none_i for always_i, none_i in zip(always, _absent_questions(bank, scenes, 0.0)))
    assert never >= 1  # the share changes something on scenes that hold a planted A without its B
