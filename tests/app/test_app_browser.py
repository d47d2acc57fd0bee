"""The app in headless Chromium (Playwright, Debian's chromium): the attribution -> vector -> side-by-side flow,
click-to-toggle tokens, a VLM photo overlay and HTML injection rendered as text (the embedded model's flow and
timings are in test_recipes_browser.py, beside the other runs of the first screen's example).

Screenshots go to test-output/ (gitignored), never into the tree.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import Page  # noqa: E402

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "assets" / "images" / "astronaut.jpg"
TIMEOUT = 120_000
EMBEDDED_TIMEOUT = 600_000  # ms: one converged attribution on the embedded model under CI load
# generation finished: ok, or warn when the setting's side effect is over the KL budget
GEN_DONE = "#grains-gen-status .grains-note-ok, #grains-gen-status .grains-note-warn"






def open_app(page: Page, url: str, model: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"#grains-model-card:has-text('{model}')")


def watch_for_text(page: Page, pattern: str) -> None:
    """Record every text matching the JavaScript regex `pattern` that appears anywhere in the page from now on, even
    for a moment (a MutationObserver: polling the page can miss a progress line on a loaded machine); read the
    records with `seen_texts`, or wait for one with `page.wait_for_function(SEEN_ANY, polling=100)`."""
    page.evaluate("""(pattern) => {
        const re = new RegExp(pattern);
        window.__grainsSeen = [];
        const look = (node) => {
            const text = node && node.textContent;
            const match = text && text.match(re);
            if (match) window.__grainsSeen.push(match[0]);
        };
        new MutationObserver((records) => records.forEach((r) => {
            look(r.target);
            r.addedNodes.forEach(look);
        })).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""", pattern)


SEEN_ANY = "window.__grainsSeen && window.__grainsSeen.length > 0"


def seen_texts(page: Page) -> list[str]:
    """The texts recorded since `watch_for_text`."""
    return page.evaluate("window.__grainsSeen || []")


def attribute(page: Page, timeout_ms: int | None = None) -> float:
    """Click Attribute and wait for the heatmap; returns the seconds it took."""
    start = time.perf_counter()
    page.click("#grains-attribute")
    page.wait_for_selector("#grains-heatmap .grains-tok", timeout=timeout_ms)
    page.wait_for_selector("#grains-attr-summary .grains-summary", timeout=timeout_ms)
    return time.perf_counter() - start


def generate(page: Page) -> float:
    page.click("#grains-tab-compare-button")
    start = time.perf_counter()
    page.click("#grains-generate")
    page.wait_for_selector(GEN_DONE)
    return time.perf_counter() - start


def columns(page: Page) -> tuple[str, str]:
    return page.inner_text("#grains-unsteered .grains-diff"), page.inner_text("#grains-steered .grains-diff")


def test_example_attribution_vector_and_side_by_side(page, app_server, test_output_dir):
    # the page opens filled in: three small calls run on load (the model card, whose "also loaded" line changes
    # while the app runs; the restore of this browser's kept session after a reload; and the restore's second sending
    # of results, which answers at once on a new browser), nothing else until the user acts
    events: list[str] = []
    page.on("request", lambda r: events.append(r.url) if "/run/" in r.url or "/queue/join" in r.url else None)
    open_app(page, app_server("tiny-random-llama"), "tiny-random-llama")
    assert "Random weights" in page.inner_text("#grains-model-card")
    for _ in range(100):  # the baked card shows before the load events are sent: wait for them, then for quiet
        if len(events) >= 3:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    assert len(events) == 3 and all("/run/predict" in e for e in events), events
    page.click("#grains-text-examples button:has-text('fortune cookies')")
    page.wait_for_function("document.querySelector('#grains-prompt textarea').value.includes('fortune')")
    attribute(page)
    assert page.locator("#grains-heatmap .grains-sel-pos").count() >= 1
    page.screenshot(path=str(test_output_dir / "tiny_attribution.png"), full_page=True)

    # click a plain token: it becomes a forced positive, and its index shows in the index field
    token = page.locator("#grains-heatmap .grains-tok:not(.grains-excluded):not(.grains-sel-pos)").first
    index = token.get_attribute("data-index")
    token.click()
    page.wait_for_selector(f"#grains-heatmap .grains-tok.grains-sel-pos[data-index='{index}']")
    field = page.locator("label:has-text('Force positive') textarea, label:has-text('Force positive') input").first
    assert field.input_value() == index
    # an index out of range: one toast, one error badge, and the chart and raw scores stay
    field.fill("999")
    page.get_by_text("Apply indices").click()
    page.locator("[data-testid='toast-body']").first.wait_for()
    page.wait_for_timeout(500)
    assert "token index 999 is out of range" in page.locator("[data-testid='toast-body']").first.inner_text()
    assert page.locator("[data-testid='toast-body']").count() == 1
    badges = [b for b in page.locator("[data-testid='status-tracker'] span.error").all() if b.is_visible()]
    assert len(badges) <= 1
    assert page.locator("#grains-attr-chart .js-plotly-plot").count() == 1
    assert page.locator("#grains-heatmap .grains-tok").count() > 0
    page.locator("[data-testid='toast-body'] ~ button, [data-testid='toast-close']").first.click()

    page.click("#grains-tab-steer-button")
    page.get_by_text("the current example (Attribute tab)").click()
    page.click("#grains-build")
    page.wait_for_selector("#grains-build-status .grains-note-ok")
    assert "the current example" in page.inner_text("#grains-vector-card")
    page.screenshot(path=str(test_output_dir / "tiny_vector.png"), full_page=True)

    generate(page)
    unsteered, steered = columns(page)
    assert unsteered.strip() and steered.strip()
    page.screenshot(path=str(test_output_dir / "tiny_side_by_side.png"), full_page=True)
    assert page.dialogs == []


def test_html_in_the_prompt_renders_as_text(page, app_server, test_output_dir):
    open_app(page, app_server("tiny-random-llama"), "tiny-random-llama")
    page.fill("#grains-prompt textarea", "<script>alert(1)</script> <img src=x onerror=alert(2)> Is it safe?")
    page.fill("#grains-chosen textarea", " <b>yes</b>")
    page.fill("#grains-rejected textarea", " no")
    attribute(page)
    heat = page.locator("#grains-heatmap")
    assert heat.locator("script").count() == 0 and heat.locator("img").count() == 0
    assert heat.locator("b").count() == 0
    text = "".join(t.replace("·", " ") for t in heat.locator(".grains-tok").all_inner_texts())
    assert "<script>alert(1)</script>" in text and "onerror=alert(2)>" in text
    page.click("#grains-tab-compare-button")
    page.fill("#grains-gen-prompt textarea", "<img src=y onerror=alert(3)>")
    page.click("#grains-tab-steer-button")
    page.get_by_text("the current example (Attribute tab)").click()
    page.click("#grains-build")  # a vector from the (hostile) example, so Generate has one
    page.wait_for_selector("#grains-build-status .grains-note-ok")
    generate(page)
    page.wait_for_timeout(500)
    page.screenshot(path=str(test_output_dir / "xss_as_text.png"), full_page=True)
    assert page.dialogs == [], f"a script ran: {page.dialogs}"


def test_vlm_photo_overlay(page, app_server, test_output_dir):
    open_app(page, app_server("tiny-random-llava"), "tiny-random-llava")
    page.wait_for_selector("#grains-image", state="visible")
    page.set_input_files("#grains-image input[type=file]", str(PHOTO))
    page.wait_for_selector("#grains-image img")
    page.fill("#grains-prompt textarea", "Is there a person in the image?")
    page.fill("#grains-chosen textarea", " Yes")
    page.fill("#grains-rejected textarea", " No")
    attribute(page)
    page.wait_for_selector("#grains-overlay img")
    share = page.inner_text("#grains-image-share")
    assert "image tokens" in share
    page.screenshot(path=str(test_output_dir / "vlm_overlay.png"), full_page=True)


def choose(page: Page, elem_id: str, label: str) -> None:
    """Pick `label` in the gr.Dropdown `elem_id`."""
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=label).click()
    page.wait_for_function(f"document.querySelector('#{elem_id} input').value === {json.dumps(label)}")


def test_prompt_format_negative_strength_and_corrected_sweep(page, app_server, test_output_dir):
    """The format selector reaches the model (the Model input box shows the exact text), a negative strength
    steers, and the sweep heatmap says Holm-corrected over N cells with the best cell labelled best of N, with the
    effect against side-effect plot beneath it."""
    open_app(page, app_server("tiny-random-llama"), "tiny-random-llama")
    assert "chat (template)" in page.inner_text("#grains-model-card")  # the model's own format, by its new name
    assert page.input_value("#grains-prompt-format input") == "chat: the model's template"
    page.fill("#grains-prompt textarea", "Is the sky blue?")
    page.fill("#grains-chosen textarea", " Yes")
    page.fill("#grains-rejected textarea", " No")
    choose(page, "grains-prompt-format", "qa: Q: … A:")
    attribute(page)
    page.wait_for_function("document.querySelector('#grains-model-input textarea').value.length > 0")
    assert page.input_value("#grains-model-input textarea") == "Q: Is the sky blue?\nA:"
    choose(page, "grains-prompt-format", "raw: the text as written")
    page.click("#grains-attribute")
    page.wait_for_function("document.querySelector('#grains-model-input textarea').value === 'Is the sky blue?'")

    page.click("#grains-tab-steer-button")
    page.get_by_text("the current example (Attribute tab)").click()
    page.click("#grains-build")
    page.wait_for_selector("#grains-build-status .grains-note-ok")
    assert "Direction at layer" in page.inner_text("#grains-vector-card")
    strength = page.locator("#grains-strength input[type=number]")
    strength.fill("-1")
    strength.press("Enter")
    assert "negative steers the other way" in page.inner_text("#grains-tab-steer")

    page.click("#grains-tab-compare-button")
    page.wait_for_selector("#grains-gen-prompt textarea", state="visible")
    page.wait_for_timeout(500)  # the tab's components mount with their initial values first
    page.fill("#grains-gen-prompt textarea", "Hello")
    choose(page, "grains-gen-prompt-format", "qa: Q: … A:")
    assert page.input_value("#grains-gen-prompt textarea") == "Hello"
    page.click("#grains-generate")
    page.wait_for_selector(GEN_DONE)
    assert "strength -1.00" in page.inner_text("#grains-tab-compare")
    assert page.input_value("#grains-gen-model-input textarea") == "Q: Hello\nA:"

    page.click("#grains-tab-evaluate-button")
    page.wait_for_selector("#grains-eval-rows input[type=number]", state="visible")
    page.wait_for_timeout(500)
    rows = page.locator("#grains-eval-rows input[type=number]")
    rows.fill("3")
    rows.press("Enter")
    page.fill("#grains-sweep-layers textarea, #grains-sweep-layers input", "0, 1")
    page.fill("#grains-sweep-strengths textarea, #grains-sweep-strengths input", "-0.5, 0, 1")
    page.click("#grains-sweep")
    page.wait_for_selector("#grains-sweep-note .grains-note")
    note = page.inner_text("#grains-sweep-note")
    assert "Holm-corrected over 4 cells tested" in note and "best of 4" in note
    page.wait_for_selector("#grains-sweep-plot .js-plotly-plot")
    assert "Holm-corrected over 4 cells tested" in page.inner_text("#grains-sweep-plot")
    page.wait_for_selector("#grains-side-effect-plot .js-plotly-plot")
    assert "KL budget 0.5 nats" in page.inner_text("#grains-side-effect-plot")
    page.click("#grains-evaluate")
    page.wait_for_selector("#grains-eval-summary:has-text('Side effects')")
    assert "KL" in page.inner_text("#grains-eval-summary")
    page.screenshot(path=str(test_output_dir / "tiny_sweep_side_effects.png"), full_page=True)
    assert page.dialogs == []
