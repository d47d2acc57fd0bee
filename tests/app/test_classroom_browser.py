"""A classroom through the browser: a reloaded page gets its example, heatmap and built vector back; another
browser (another context) never sees them; behind --auth a wrong password is refused (browser and gradio_client)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")

from gradio_client import Client  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

from tests.conftest import free_port, open_page  # noqa: E402

TIMEOUT = 120_000
OWN_PROMPT = "Zebras crossing the quiet river"


def tokens_shown(page):
    """The heatmap's text without an "Outdated" banner (a field's change event may mark it) or the timer of Gradio's
    status tracker ("0.1s"), which may still be fading out when the text is read."""
    return [line for line in page.inner_text("#grains-heatmap").splitlines()
            if not line.startswith("Outdated") and not re.fullmatch(r"\d+(\.\d+)?s", line.strip())]


def test_reload_gives_back_the_example_heatmap_and_vector_and_no_other_browser_sees_them(browser, url):
    a = open_page(browser, TIMEOUT)
    b = open_page(browser, TIMEOUT)
    try:
        a.goto(url)
        a.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
        a.fill("#grains-prompt textarea", OWN_PROMPT)
        a.click("#grains-attribute")
        a.wait_for_selector("#grains-heatmap .grains-tok")
        heatmap = tokens_shown(a)
        a.click("#grains-tab-steer-button")
        a.get_by_text("the current example (Attribute tab)").click()
        a.click("#grains-build")
        a.wait_for_selector("#grains-build-status .grains-note-ok")
        card = a.inner_text("#grains-vector-card")
        assert "shipped default" not in card and card.strip()

        a.reload()
        a.wait_for_function(f"(document.querySelector('#grains-prompt textarea') || {{}}).value === {OWN_PROMPT!r}")
        a.wait_for_selector("#grains-heatmap .grains-tok")
        a.wait_for_timeout(1500)  # the results are sent again after the restored fields' change events
        assert tokens_shown(a) == heatmap
        assert not a.locator("#grains-heatmap .grains-outdated").count()
        a.click("#grains-tab-steer-button")
        assert a.inner_text("#grains-vector-card") == card

        b.goto(url)  # another browser: its own fresh session
        b.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
        b.wait_for_timeout(1500)
        assert b.input_value("#grains-prompt textarea") != OWN_PROMPT
        assert not b.locator("#grains-heatmap .grains-tok").count()
        b.click("#grains-tab-steer-button")
        assert b.inner_text("#grains-vector-card") != card
        assert not a.dialogs and not b.dialogs
    finally:
        a.context.close()
        b.context.close()


def test_a_waiting_build_shows_its_place_and_is_cancelled_before_it_starts(browser, url):
    from tests.app.test_classroom_scheduling import BUILD, wait_until

    holder = Client(url, verbose=False)
    running = holder.submit(*BUILD, api_name="/build_vector")  # holds the long lane
    page = open_page(browser, TIMEOUT)
    try:
        assert wait_until(lambda: running.status().code == Status.PROCESSING, 120), running.status()
        page.goto(url)
        page.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
        page.click("#grains-tab-steer-button")
        page.get_by_text("a dataset", exact=True).click()  # valid without an attribution on this page
        page.click("#grains-build")
        page.wait_for_selector("text=/queue/i")  # Gradio's place in the long lane
        page.click("#grains-cancel-waiting")
        page.wait_for_selector("#grains-cancel-note:has-text('Cancelled 1 waiting job')")
        holder.predict(api_name="/stop_build")
        assert wait_until(running.done, 120)
        page.wait_for_timeout(2000)
        assert "Built in" not in page.inner_text("#grains-build-status")  # the cancelled build never ran
    finally:
        page.context.close()
        if not running.done():
            holder.predict(api_name="/stop_build")


@pytest.fixture(scope="module")
def auth_url():
    import app

    demo = app.build_app("tiny-random-llama")
    port = free_port()
    app.launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                   auth=[("teacher", "right-horse")])
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_a_wrong_password_is_refused_in_the_browser_and_through_gradio_client(browser, auth_url):
    with pytest.raises(Exception, match="(?i)login|credentials|auth|401|403"):
        Client(auth_url, auth=("teacher", "wrong-horse"), verbose=False)
    with pytest.raises(Exception, match="(?i)login|credentials|auth|401|403|config"):
        Client(auth_url, verbose=False)
    assert Client(auth_url, auth=("teacher", "right-horse"), verbose=False).view_api(return_format="dict")

    page = open_page(browser, TIMEOUT)
    try:
        page.goto(auth_url)
        page.fill("input[type=text]", "teacher")
        page.fill("input[type=password]", "wrong-horse")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=/incorrect|invalid|wrong/i")
        assert not page.locator("#grains-model-card").count()
        page.goto(auth_url)
        page.fill("input[type=text]", "teacher")
        page.fill("input[type=password]", "right-horse")
        page.keyboard.press("Enter")
        page.wait_for_selector("#grains-model-card:has-text('tiny-random-llama')")
    finally:
        page.context.close()
