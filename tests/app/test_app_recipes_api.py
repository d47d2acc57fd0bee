"""Issue 14 through the app's API (gradio_client): the short calls /attribute(prompt, chosen, rejected) and
/generate(prompt) with every other parameter at its default, keyword calls by parameter name, and re-attribution
under steering (/attribute_steered): at strength 0 the steered scores are the unsteered ones and the difference is
0; at a non-zero strength they differ."""

from __future__ import annotations

import math

import pytest

gradio_client = pytest.importorskip("gradio_client")

from grains.attribution import DEFAULT_STEPS  # noqa: E402
from tests.app.test_app_api import client  # noqa: E402

PROMPT = "Q: What is the capital of France?\nA:"
CHOSEN, REJECTED = " Paris", " London"


@pytest.fixture(scope="module")
def with_vector(url):
    """A session that attributed PROMPT (short call) and built a vector from it."""
    c = client(url)
    _, scores, _ = c.predict(PROMPT, CHOSEN, REJECTED, api_name="/attribute")
    c.predict("example", "", None, 1, 0, "grains", 2, 4, False, api_name="/build_vector")
    return c, scores


def test_optional_parameters_have_defaults(url):
    api = client(url).view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, required in [("/attribute", 3), ("/generate", 1), ("/attribute_steered", 0),
                           ("/strength_sweep", 1)]:
        params = api[name]["parameters"]
        assert [p["parameter_has_default"] for p in params] == [False] * required + [True] * (len(params) - required), \
            (name, [(p["parameter_name"], p["parameter_has_default"]) for p in params])
    defaults = {p["parameter_name"]: p["parameter_default"] for p in api["/attribute"]["parameters"]}
    assert defaults["steps"] == DEFAULT_STEPS and defaults["image"] is None and defaults["target"] == "sequence"


def test_attribute_short_call_uses_the_defaults(url):
    c = client(url)
    html, scores, delta = c.predict(PROMPT, CHOSEN, REJECTED, api_name="/attribute")
    assert 'class="grains-tok' in html
    assert scores["steps"] == DEFAULT_STEPS and scores["target"] == "sequence" and scores["baseline"] == "zero"
    assert scores["prompt_format"] == "chat"  # tiny-random-llama has a chat template: its default format
    assert math.isclose(delta, scores["delta"], rel_tol=1e-6, abs_tol=1e-9)
    # the same call by keyword, and a keyword for one optional parameter
    _, again, _ = c.predict(prompt=PROMPT, chosen=CHOSEN, rejected=REJECTED, api_name="/attribute")
    assert again["scores"] == pytest.approx(scores["scores"], rel=1e-6, abs=1e-9)
    _, raw, _ = c.predict(prompt=PROMPT, chosen=CHOSEN, rejected=REJECTED, prompt_format="raw", steps=4,
                          api_name="/attribute")
    assert raw["prompt_text"] == PROMPT and raw["steps"] == 4 and raw["prompt_format"] == "raw"


def test_generate_short_call_and_keywords(with_vector):
    c, _ = with_vector
    unsteered, steered = c.predict("Hello there", api_name="/generate")  # layer 0, strength 0.5, 40 tokens, greedy
    assert isinstance(unsteered, str) and unsteered and isinstance(steered, str)
    same_u, same_s = c.predict(prompt="Hello there", strength=0, max_new_tokens=8, api_name="/generate")
    assert same_u == same_s  # strength 0 is the identity
    assert unsteered.startswith(same_u)  # greedy: the 8-token text is a prefix of the 40-token one


def test_steered_attribution_at_strength_zero_equals_unsteered(with_vector):
    c, scores = with_vector
    html, data = c.predict(strength=0, api_name="/attribute_steered")
    assert data["unsteered"]["scores"] == pytest.approx(scores["scores"], rel=1e-6, abs=1e-9)
    assert data["steered"]["scores"] == data["unsteered"]["scores"]
    assert all(d == 0.0 for d in data["scores"]) and data["margin_change"] == 0.0
    assert data["steering"]["strength"] == 0.0
    assert "Strength 0" in html and "Unsteered model" in html and "Steered model" in html


def test_steered_attribution_at_a_strength_differs(with_vector):
    c, scores = with_vector
    html, data = c.predict(1, 2.0, api_name="/attribute_steered")
    assert data["steering"]["layers"] == [1] and data["steering"]["strength"] == 2.0
    assert data["tokens"] == scores["tokens"]
    diffs = [s - u for u, s in zip(data["unsteered"]["scores"], data["steered"]["scores"])]
    assert data["scores"] == pytest.approx(diffs, abs=1e-9)
    assert max(abs(d) for d in data["scores"]) > 1e-6
    assert data["margin_change"] == pytest.approx(data["steered"]["f_input"] - data["unsteered"]["f_input"])
    assert data["margin_change"] != 0.0
    for side in ("unsteered", "steered"):  # both convergence checks are reported
        assert isinstance(data[side]["converged"], bool) and data[side]["delta"] is not None
    assert data["converged"] == (data["unsteered"]["converged"] and data["steered"]["converged"])
    assert "Difference: steered − unsteered" in html


def test_steered_attribution_needs_an_attribution_and_a_vector(url):
    from gradio_client.exceptions import AppError

    c = client(url)
    with pytest.raises(AppError, match="Run an attribution first"):
        c.predict(api_name="/attribute_steered")
    c.predict(PROMPT, CHOSEN, REJECTED, 4, api_name="/attribute")
    with pytest.raises(AppError, match="no steering vector"):
        c.predict(api_name="/attribute_steered")
