"""The bad-input corpus through the Python API: each case raises its GrainsError subclass with a clear message (or,
for the unicode and small-image cases, works with finite results), and nothing is lost: no hook stays on the model
and the next unsteered generation is unchanged."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from grains.errors import GrainsError
from tests.robustness.bad_inputs import (
    CASES,
    CHOSEN,
    PICKLE_MARKER,
    PROMPT,
    REJECTED,
    TEXT_MODEL,
    VLM_MODEL,
    Case,
    all_finite,
    ids,
    resolve,
    valid_vector,
)

FIXED_PROMPT = "The weather today is"


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """Models loaded once for the module (the VLM only when an image case asks for it)."""
    from grains.models import load_model

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = load_model(name)
        return cache[name]

    return {"get": get}


@pytest.fixture(scope="module")
def text_lm(models) -> Any:
    return models["get"](TEXT_MODEL)


@pytest.fixture(scope="module")
def baseline_text(text_lm) -> str:
    """The unsteered continuation of a fixed prompt, before any bad input."""
    from grains.generation import GenerationSettings, generate_one

    return generate_one(text_lm, FIXED_PROMPT, settings=GenerationSettings(max_new_tokens=4))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_api")


@pytest.fixture(scope="module")
def reference_attribution(text_lm) -> Any:
    from grains.attribution import attribute

    return attribute(text_lm, PROMPT, CHOSEN, REJECTED, steps=2)


def run_case(case: Case, lm: Any, args: dict[str, Any], reference: Any) -> Any:
    """Call the library the way a user of the Python API would for this case."""
    from grains.attribution import attribute
    from grains.data import load_any
    from grains.generation import GenerationSettings, generate_pair
    from grains.images import load_image
    from grains.models import load_model
    from grains.topk import select_top_k
    from grains.vectors import load_vector

    surface = case.surface
    if surface == "attribute":
        return attribute(lm, args["prompt"], args["chosen"], args["rejected"], steps=args["steps"])
    if surface == "select":
        return select_top_k(reference.scores, args["k"], eligible=reference.content_mask)
    if surface == "generate":
        settings = GenerationSettings(max_new_tokens=args["max_new_tokens"])
        return generate_pair(lm, args["prompt"], valid_vector(), args["layer"], args["strength"], settings)
    if surface == "image":
        return attribute(lm, "Is there a cat in the image?", " Yes", " No", image=load_image(args["image"]), steps=2)
    if surface == "dataset":
        return load_any(args["file"])
    if surface == "vector":
        vector = load_vector(args["vector"])
        vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers)
        return vector
    if surface == "model":
        saved = {k: os.environ.get(k) for k in case.extra.get("env", {})}
        os.environ.update(case.extra.get("env", {}))
        try:
            return load_model(args["name"])
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    raise AssertionError(f"unknown surface {surface}")


def check_works(case: Case, result: Any) -> None:
    """A case that must work gives finite scores."""
    from grains.attribution import AttributionResult

    assert isinstance(result, AttributionResult), case.id
    assert result.tokens and len(result.tokens) == len(result.scores)
    assert all_finite(result.scores) and all_finite(result.plus_scores) and all_finite(result.minus_scores)
    assert math.isfinite(result.f_input) and math.isfinite(result.f_baseline) and math.isfinite(result.delta)
    if case.surface == "image":
        assert result.image_grid is not None and all_finite(result.image_grid)


def test_corpus_is_big_enough():
    assert len(CASES) >= 40
    assert sum(case.ok for case in CASES) >= 8 and sum(not case.ok for case in CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_case_through_the_api(case, models, text_lm, baseline_text, reference_attribution, folder):
    from grains.generation import GenerationSettings, generate_one
    from grains.steering import active_hook_count

    lm = models["get"](case.model) if case.surface != "model" else text_lm
    args = resolve(case.args, folder)
    if case.ok:
        check_works(case, run_case(case, lm, args, reference_attribution))
    else:
        with pytest.raises(GrainsError) as info:
            run_case(case, lm, args, reference_attribution)
        error = info.value
        assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
        message = str(error)
        assert case.fragment.lower() in message.lower(), message
        assert "\n" not in message.strip() and len(message) < 600, "one clear line"
        assert "Traceback" not in message
    assert not (folder / PICKLE_MARKER).exists(), "a pickle was unpickled"
    # nothing lost: no hook left on the model, the unsteered output is unchanged
    for name in (TEXT_MODEL, VLM_MODEL) if case.model == VLM_MODEL else (TEXT_MODEL,):
        assert active_hook_count(models["get"](name)) == 0
    if case.surface in ("generate", "vector", "model"):
        assert generate_one(text_lm, FIXED_PROMPT, settings=GenerationSettings(max_new_tokens=4)) == baseline_text
