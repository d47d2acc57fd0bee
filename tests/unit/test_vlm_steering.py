"""Steering VLMs: identity at strength 0 and batched pair = separate runs, per family, with an image."""

import pytest
import torch

from grains.generation import GenerationSettings, generate_one, generate_pair
from grains.images import load_image
from grains.models import load_model
from grains.steering import active_hook_count, steer
from grains.vectors import SteeringVector

FAMILIES = ["tiny-random-llava", "tiny-random-llava-next", "tiny-random-qwen2-vl", "tiny-random-idefics3",
            "tiny-random-gemma3"]
SETTINGS = GenerationSettings(max_new_tokens=6)
QUESTION = "Is there a cup in the image?"


def vector_for(lm, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector({i: torch.randn(lm.hidden_size, generator=gen) for i in range(lm.num_layers)},
                          {i: 2.0 for i in range(lm.num_layers)}, lm.model_id, lm.hidden_size, lm.num_layers,
                          default_layer=0, default_strength=1.0)


@pytest.fixture(scope="module")
def photo():
    from pathlib import Path

    return load_image(Path(__file__).resolve().parents[2] / "assets" / "images" / "coffee.jpg")


@pytest.mark.parametrize("name", FAMILIES)
def test_strength_zero_is_identity_and_pair_equals_separate_runs(name, photo):
    lm = load_model(name)
    vector = vector_for(lm)
    at_zero = generate_pair(lm, QUESTION, vector, layer=0, strength=0.0, settings=SETTINGS, image=photo)
    assert at_zero.steered == at_zero.unsteered
    pair = generate_pair(lm, QUESTION, vector, layer=0, strength=2.0, settings=SETTINGS, image=photo)
    assert pair.unsteered == generate_one(lm, QUESTION, settings=SETTINGS, image=photo)
    assert pair.steered == generate_one(lm, QUESTION, vector, layer=0, strength=2.0, settings=SETTINGS, image=photo)
    assert active_hook_count(lm) == 0


@pytest.mark.parametrize("name", FAMILIES)
def test_hooks_sit_on_the_language_model(name, photo):
    lm = load_model(name)
    enc = lm.encode_prompt(QUESTION, image=photo)
    ids = torch.tensor([enc.ids])
    inputs = lm.adapter.generation_inputs(ids, enc.extras)
    with torch.no_grad():
        plain = lm.model(**inputs).logits
        with steer(lm, vector_for(lm), layers=0, strength=0.0):
            same = lm.model(**inputs).logits
        with steer(lm, vector_for(lm), layers=0, strength=2.0):
            moved = lm.model(**inputs).logits
    assert torch.equal(plain, same)
    assert (plain - moved).abs().max() > 1e-4
