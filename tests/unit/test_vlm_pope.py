"""POPE-style probes: metrics against hand-counted confusion tables, yes/no scoring, steering factory, pairs."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from grains.errors import InputError
from grains.models import load_model
from grains.scoring import response_logprobs
from grains.vlm.adapters import as_pil_image
from grains.vlm.pope import evaluate_probes, probe_metrics, probes_to_pairs, score_yes_no

DATA = str(Path(__file__).resolve().parents[2] / "assets" / "data")
IMAGES = str(Path(__file__).resolve().parents[2] / "assets" / "images")


def test_metrics_match_hand_counts():
    predictions = ["yes", "yes", "yes", "no", "no", "yes", "no", "no", "yes", "no"]
    truths = ["yes", "yes", "no", "yes", "no", "yes", "no", "no", "no", "yes"]
    # by hand: TP = items 0,1,5 -> 3; FP = items 2,8 -> 2; TN = items 4,6,7 -> 3; FN = items 3,9 -> 2
    m = probe_metrics(predictions, truths)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (3, 2, 3, 2, 10)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(0.6)
    assert m["yes_ratio"] == pytest.approx(0.5)


def test_metrics_edge_cases():
    always_no = probe_metrics(["no", "no", "no"], ["yes", "no", "no"])
    assert always_no["precision"] == 0.0 and always_no["recall"] == 0.0 and always_no["f1"] == 0.0
    assert always_no["accuracy"] == pytest.approx(2 / 3) and always_no["yes_ratio"] == 0.0
    always_yes = probe_metrics(["yes"] * 4, ["yes", "no", "no", "no"])
    assert always_yes["recall"] == 1.0 and always_yes["precision"] == pytest.approx(0.25)
    assert always_yes["f1"] == pytest.approx(2 * 0.25 / 1.25)
    with pytest.raises(InputError):
        probe_metrics([], [])
    with pytest.raises(InputError):
        probe_metrics(["yes"], ["yes", "no"])


@pytest.fixture(scope="module")
def probes():
    with open(f"{DATA}/pope_style.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return rows[:2] + [r for r in rows if r["answer"] == "no"][:2]


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny-random-qwen2-vl")


def test_score_yes_no_is_the_answer_start_logprob(lm):
    image = as_pil_image(f"{IMAGES}/coffee.jpg")
    lp_yes, lp_no = score_yes_no(lm, image, "Is there a cup in the image?")
    assert lp_yes < 0 and lp_no < 0 and lp_yes != lp_no
    # the same number straight from the model's own forward (pixels merged by the model) on prompt + "Yes"
    enc = lm.encode_prompt("Is there a cup in the image?", image=image)
    yes_ids = lm.tokenizer("Yes", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([enc.ids + yes_ids])
    with torch.no_grad():
        logits = lm.model(**lm.adapter.generation_inputs(ids, enc.extras)).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = len(enc.ids)
    by_hand = sum(float(logp[p - 1 + j, t]) for j, t in enumerate(yes_ids))
    assert lp_yes == pytest.approx(by_hand, abs=1e-4)
    sums, _ = response_logprobs(lm, enc, ["Yes", "No"])
    assert (lp_yes, lp_no) == pytest.approx(tuple(sums), abs=1e-6)


def test_evaluate_probes_counts_and_steering_factory(lm, probes):
    entered = []

    @contextmanager
    def fake_steering():
        entered.append(1)
        yield

    result = evaluate_probes(lm, probes, steering=fake_steering, image_root=DATA)
    assert result["n"] == 4 and len(result["items"]) == 4 and len(entered) == 4
    predictions = [i["answer"] for i in result["items"]]
    truths = [i["truth"] for i in result["items"]]
    assert truths == ["yes", "yes", "no", "no"]
    assert {k: result[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")} == pytest.approx(
        {k: v for k, v in probe_metrics(predictions, truths).items()
         if k in ("accuracy", "precision", "recall", "f1", "yes_ratio")})
    for item in result["items"]:
        assert item["answer"] == ("yes" if item["logp_yes"] > item["logp_no"] else "no")
        assert item["correct"] == (item["answer"] == item["truth"])
    unsteered = evaluate_probes(lm, probes, image_root=DATA)
    assert [i["logp_yes"] for i in unsteered["items"]] == pytest.approx([i["logp_yes"] for i in result["items"]])


def test_steering_changes_the_scores(lm, probes):
    """A hook on the language model's layers (what steering does) reaches the probe scores."""
    @contextmanager
    def push():
        handle = lm.adapter.layers[0].register_forward_hook(lambda m, a, out: out + 0.5)
        try:
            yield
        finally:
            handle.remove()

    plain = evaluate_probes(lm, probes[:1], image_root=DATA)["items"][0]
    pushed = evaluate_probes(lm, probes[:1], steering=push, image_root=DATA)["items"][0]
    assert abs(plain["logp_yes"] - pushed["logp_yes"]) > 1e-3


def test_probes_to_pairs(probes):
    pairs = probes_to_pairs(probes, image_root=DATA)
    assert [(p.chosen, p.rejected) for p in pairs] == [("Yes", "No"), ("Yes", "No"), ("No", "Yes"), ("No", "Yes")]
    assert pairs[0].prompt == probes[0]["question"]
    assert pairs[0].image == f"{DATA}/{probes[0]['image']}"
    with pytest.raises(InputError):
        probes_to_pairs([{"image": "x.jpg", "question": "Is it?", "answer": "maybe"}])
