"""The Hallucination check tab in headless Chromium (Playwright, Debian's chromium): load a tiny VLM, upload a photo,
enter two present and two absent objects, run the check, open one probe's heatmap, build a vector from the shipped
probes, re-check on held-out probes. Screenshots go to test-output/ (gitignored)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "assets" / "images" / "coffee.jpg"
TIMEOUT = 180_000
VIEWPORT_HEIGHT = 1100






def test_check_heatmap_and_recheck(page, app_server, test_output_dir):
    page.goto(app_server("tiny-random-llava"))
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llava')")
    page.click("#grains-tab-hallucination-button")
    page.wait_for_selector("#grains-hc-main", state="visible")
    assert "random weights" in page.inner_text("#grains-hc-model-note")

    page.set_input_files("#grains-hc-image input[type=file]", str(PHOTO))
    page.wait_for_selector("#grains-hc-image img")
    page.fill("#grains-hc-present textarea", "cup, spoon")
    page.fill("#grains-hc-absent textarea", "fork, laptop")
    page.click("#grains-hc-run")
    page.wait_for_selector("#grains-hc-summary table.grains-summary")
    summary = page.inner_text("#grains-hc-summary")
    assert "n = 4 probes" in summary and "2 present, 2 absent" in summary
    table = page.inner_text("#grains-hc-table")
    for obj in ("cup", "spoon", "fork", "laptop"):
        assert obj in table
    page.screenshot(path=str(test_output_dir / "hallucination_check.png"), full_page=True)

    # one probe's heatmap: the absent "fork"
    page.locator("#grains-hc-probe label:has-text('fork')").click()
    page.wait_for_selector("#grains-hc-heatmap img")
    note = page.inner_text("#grains-hc-heat-note")
    assert "Is there a fork in the image?" in note and "convergence" in note.lower() or "converged" in note
    page.screenshot(path=str(test_output_dir / "hallucination_heatmap.png"), full_page=True)

    # build from the shipped probes and re-check on the held-out probes
    page.locator("#grains-hc-source label:has-text('the shipped probes')").click()
    page.click("#grains-hc-recheck")
    page.wait_for_selector("#grains-hc-split:has-text('Split kept')")
    split = page.inner_text("#grains-hc-split")
    assert "no probe is in both" in split and "about this same photo left out" in split
    summary = page.inner_text("#grains-hc-summary")
    assert "McNemar" in summary and "With 4 probes the exact McNemar test can never reject" in summary
    assert "steered answer" in page.inner_text("#grains-hc-table")
    page.screenshot(path=str(test_output_dir / "hallucination_recheck.png"), full_page=True)
    assert page.dialogs == []


def test_errors_show_once_in_plain_words(page, app_server, test_output_dir):
    page.goto(app_server("tiny-random-llava"))
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llava')")
    page.click("#grains-tab-hallucination-button")
    page.set_input_files("#grains-hc-image input[type=file]", str(PHOTO))
    page.wait_for_selector("#grains-hc-image img")
    page.fill("#grains-hc-present textarea", "cup")
    page.fill("#grains-hc-absent textarea", "Cups")
    page.click("#grains-hc-run")
    toast = page.locator(".toast-body:has-text('listed both as present and as absent')")
    toast.first.wait_for()
    assert toast.count() == 1
    page.screenshot(path=str(test_output_dir / "hallucination_error.png"), full_page=True)


def test_shipped_photo_fills_labels_and_propose_fills_absent(page, app_server, test_output_dir):
    page.goto(app_server("tiny-random-llava"))
    page.wait_for_selector("#grains-model-card:has-text('tiny-random-llava')")
    page.click("#grains-tab-hallucination-button")
    page.click("#grains-hc-shipped input")
    page.get_by_role("option", name="chelsea").click()
    page.wait_for_function("document.querySelector('#grains-hc-present textarea').value === 'cat'")
    page.wait_for_selector("#grains-hc-image img")
    assert page.input_value("#grains-hc-absent textarea") == "dog, bird, car"
    page.locator("#grains-hc-setting label:has-text('popular')").click()
    page.click("#grains-hc-propose")
    page.wait_for_function("document.querySelector('#grains-hc-absent textarea').value === 'person'")
    assert "popular setting" in page.inner_text("#grains-hc-proposal")
    page.click("#grains-hc-run")
    page.wait_for_selector("#grains-hc-summary table.grains-summary")
    assert "proposed in the popular setting: person" in page.inner_text("#grains-hc-summary")
    page.screenshot(path=str(test_output_dir / "hallucination_shipped_photo.png"), full_page=True)
    assert page.dialogs == []
