"""Recipe (a) end to end in headless Chromium (Playwright, Debian's chromium): choose the sentiment recipe, which
loads the embedded model, its example and the shipped vector; attribute; attribute with the vector on (steered
heatmap beside the unsteered one, and the difference); compare unsteered and steered continuations.

Screenshots go to test-output/ (gitignored): recipe_attribution.png (the page), recipe_heatmap.png,
recipe_steered_attribution.png and recipe_side_by_side.png. docs/screenshot_recipe.png is a copy of
recipe_attribution.png, refreshed by hand.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("playwright")

from components.recipes import RECIPES  # noqa: E402
from components.session import DEFAULT_COMPARE_PROMPT, DEFAULT_EXAMPLE  # noqa: E402

pytestmark = pytest.mark.browser

TIMEOUT = 240_000
GEN_DONE = "#grains-gen-status .grains-note-ok, #grains-gen-status .grains-note-warn"


@pytest.fixture(scope="module")
def page(browser):
    """One page for the whole recipe walk (module scope: the steps build on each other)."""
    from tests.conftest import open_page

    pg = open_page(browser, TIMEOUT)
    yield pg
    pg.context.close()


def value_is(elem: str, text: str) -> str:
    return f"document.querySelector({json.dumps(elem)}).value === {json.dumps(text)}"


def choose_recipe(page, key: str) -> None:
    page.click("#grains-recipe input")
    page.get_by_role("option", name=RECIPES[key].title).click()


def test_pope_recipe_loads_the_tiny_vlm_with_its_photo_and_no_vector(page, app_server):
    page.goto(app_server("tiny-random-llama"))
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
    choose_recipe(page, "pope")
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llava')")
    page.wait_for_selector("#grains-recipe-box:has-text('No prebuilt vector')")
    assert "Random weights" in page.inner_text("#grains-recipe-box")
    page.wait_for_function(value_is("#grains-prompt textarea", RECIPES["pope"].prompt))
    page.wait_for_selector("#grains-image img")  # the probe's photo, in the (now visible) image input
    page.click("#grains-tab-steer-button")
    page.wait_for_selector("#grains-vector-card:has-text('No steering vector')")
    assert page.dialogs == []


@pytest.mark.slow
def test_sentiment_recipe_end_to_end(page, app_server, test_output_dir):
    from grains.presets import is_installed

    if not is_installed("gemma-3-270m"):
        pytest.skip("the embedded model is not installed")
    # start from another model and another example, so every value the recipe sets is visible as a change
    page.goto(app_server("tiny-random-llama"))
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
    page.fill("#grains-prompt textarea", "Something else entirely")
    page.fill("#grains-chosen textarea", " yes")

    choose_recipe(page, "sentiment")
    page.wait_for_selector("#grains-model-card:has-text('gemma-3-270m')")
    page.wait_for_selector("#grains-recipe-box:has-text('Vector:')")
    page.wait_for_function(value_is("#grains-prompt textarea", DEFAULT_EXAMPLE["prompt"]))
    page.wait_for_function(value_is("#grains-chosen textarea", DEFAULT_EXAMPLE["chosen"]))
    box = page.inner_text("#grains-recipe-box")
    assert "suggested layer" in box and ("Unseen neutral prompts" in box or "no held-out evaluation" in box)

    page.click("#grains-tab-steer-button")
    page.wait_for_selector("#grains-vector-card:has-text('shipped default')")

    page.click("#grains-tab-attribute-button")
    page.check("#grains-attribute-steered input[type=checkbox]")
    page.wait_for_selector("#grains-steered-attribution:has-text('Press Attribute')")
    page.click("#grains-attribute")
    page.wait_for_selector("#grains-heatmap .grains-tok")
    page.wait_for_selector("#grains-attr-summary .grains-summary")
    page.wait_for_selector("#grains-steered-attribution .grains-steered-diff")
    steered = page.inner_text("#grains-steered-attribution")
    assert "Unsteered model" in steered and "Steered model (layer" in steered
    assert "IG convergence" in steered and steered.count("converged") >= 2
    assert "The vector moved f(chosen) − f(rejected) by" in steered
    page.wait_for_selector("#grains-attr-chart .js-plotly-plot")
    page.wait_for_timeout(800)
    page.screenshot(path=str(test_output_dir / "recipe_attribution.png"), full_page=True)
    page.locator("#grains-heatmap").screenshot(path=str(test_output_dir / "recipe_heatmap.png"))
    page.locator("#grains-steered-attribution").screenshot(
        path=str(test_output_dir / "recipe_steered_attribution.png"))

    page.click("#grains-tab-compare-button")
    page.wait_for_selector("#grains-gen-prompt textarea", state="visible")
    page.wait_for_function(value_is("#grains-gen-prompt textarea", DEFAULT_COMPARE_PROMPT))
    page.click("#grains-generate")
    page.wait_for_selector(GEN_DONE)
    unsteered = page.inner_text("#grains-unsteered .grains-diff")
    steered_text = page.inner_text("#grains-steered .grains-diff")
    assert unsteered.strip() and steered_text.strip()
    assert "Side effect of this setting" in page.inner_text("#grains-gen-status")
    page.screenshot(path=str(test_output_dir / "recipe_side_by_side.png"), full_page=True)
    (test_output_dir / "recipe_texts.json").write_text(json.dumps(
        {"prompt": DEFAULT_COMPARE_PROMPT, "unsteered": unsteered, "steered": steered_text}, indent=2))
    assert page.dialogs == []
