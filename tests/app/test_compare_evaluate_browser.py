"""In headless Chromium: Compare's own controls (the session's vector, layer and strength kept in step with
the Steer tab, stop sequences, chat by default on a chat model, one sweep table that fits), results marked outdated
when their inputs change, statuses that follow the job (Stop, a sweep shown row by row and kept when stopped, a
strength typed out of range), an Evaluate run stopped midway, and Show code that loads the session's vector file.

Screenshots go to test-output/ (gitignored)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")

from tests.app.test_app_browser import GEN_DONE, SEEN_ANY, columns, open_app, watch_for_text  # noqa: E402

pytestmark = pytest.mark.browser
MODEL = "tiny-random-llama"


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory):
    """A random vector for the tiny model, saved as a user would have it on disk."""
    from grains.models import load_model
    from tests.factories import random_vector

    path = tmp_path_factory.mktemp("vec") / "my_uploaded_vector.safetensors"
    random_vector(load_model(MODEL), layer=2, strength=1.5).save(path)
    return path


def load_vector(page, path) -> None:
    page.click("#grains-tab-steer-button")
    with page.expect_file_chooser() as chooser:
        page.click("#grains-load-vector")
    chooser.value.set_files(str(path))
    page.wait_for_selector(f"#grains-vector-card:has-text('{path.name}')")


def code_text(page, elem_id: str) -> str:
    """The whole text of a gr.Code (its CodeMirror document when reachable, else the rendered lines)."""
    return page.evaluate("""(id) => {
        const content = document.querySelector('#' + id + ' .cm-content');
        if (content && content.cmView && content.cmView.view) return content.cmView.view.state.doc.toString();
        return document.querySelector('#' + id).innerText;
    }""", elem_id)


def set_number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")


def test_compare_controls_stop_sequences_and_stale_marks(page, app_server, vector_file, monkeypatch, test_output_dir):
    open_app(page, app_server(MODEL), MODEL)
    load_vector(page, vector_file)
    page.click("#grains-tab-compare-button")
    page.wait_for_selector("#grains-gen-vector:has-text('my_uploaded_vector.safetensors')")
    assert "suggested: layer 2, strength 1.5" in page.inner_text("#grains-gen-vector")
    # the vector's suggested setting arrived from the Steer tab
    page.wait_for_function("document.querySelector('#grains-gen-layer input[type=number]').value === '2'")
    assert page.input_value("#grains-gen-strength input[type=number]") == "1.5"
    assert page.input_value("#grains-gen-prompt-format input") == "chat: the model's template"  # a chat model
    assert page.is_checked("#grains-gen-stop-qa input")
    # setting the strength here sets the session's strength (the Steer tab shows it too)
    set_number(page, "grains-gen-strength", "0")
    page.wait_for_function("document.querySelector('#grains-strength input[type=number]').value === '0'")

    page.fill("#grains-gen-prompt textarea", "Tell me a story")
    page.click("#grains-generate")
    page.wait_for_selector(GEN_DONE)
    free, same = columns(page)
    assert free == same and len(free) > 6  # strength 0: identical rows
    stop = free.strip()[2:5]
    page.fill("#grains-gen-stop textarea", stop)
    # the inputs changed: the texts on screen are marked outdated
    page.wait_for_selector("#grains-unsteered:has-text('Outdated')")
    page.wait_for_selector("#grains-gen-status:has-text('Outdated')")
    page.screenshot(path=str(test_output_dir / "compare_outdated.png"), full_page=True)
    page.click("#grains-generate")
    # the new texts replace the outdated ones (GEN_DONE alone can match the previous, outdated status)
    page.wait_for_function("!document.querySelector('#grains-unsteered').innerText.includes('Outdated')")
    page.wait_for_selector(GEN_DONE)
    cut, cut_steered = columns(page)
    assert cut == cut_steered and stop not in cut and free.startswith(cut.strip()[:2])
    assert len(cut) < len(free)  # both rows stopped at the same string
    assert "Stop sequences" in page.inner_text("#grains-gen-status")

    # the sweep: one table, its header on one line, nothing wider than the page; a new sweep replaces it
    page.click("text=Strength sweep: the same prompt at several strengths")
    strengths = page.locator("#grains-gen-sweep-strengths textarea, #grains-gen-sweep-strengths input").first
    strengths.fill("0, 4")
    for _ in range(2):
        page.click("#grains-gen-sweep")
        page.wait_for_selector("#grains-sweep-table table")
        page.wait_for_function("!document.querySelector('#grains-sweep-table .grains-outdated')")
        page.wait_for_function("!document.querySelector('#grains-sweep-table .grains-sweep-waiting')")  # all rows
    assert page.locator("#grains-sweep-table table").count() == 1
    header = page.locator("#grains-sweep-table th").first
    assert header.inner_text() == "strength"
    heights = [page.locator("#grains-sweep-table th").nth(i).bounding_box()["height"] for i in range(4)]
    assert max(heights) < 40, heights  # no "stren/gth"
    box = page.locator("#grains-sweep-table .grains-sweep-table")
    assert box.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    last = page.locator("#grains-sweep-table tbody tr").nth(1).locator("td").nth(3).inner_text()
    assert "unsteered" in last  # what changed, against the unsteered text
    page.screenshot(path=str(test_output_dir / "compare_sweep_table.png"), full_page=True)
    check_statuses_follow_the_job(page, monkeypatch, test_output_dir)
    assert page.dialogs == []


def slowed(fn, seconds: float):
    """`fn` (a function or a generator function of the in-process app) taking `seconds` longer per call or item."""
    import inspect
    import time

    if inspect.isgeneratorfunction(fn):
        def slow_items(*args, **kwargs):
            for item in fn(*args, **kwargs):
                time.sleep(seconds)
                yield item
        return slow_items

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return fn(*args, **kwargs)
    return slow


def check_statuses_follow_the_job(page, monkeypatch, test_output_dir) -> None:
    """On the Compare tab with a vector loaded: a clamped strength says so, Stop leaves a true status, the sweep
    shows its rows as they finish and keeps them when stopped."""
    import grains.generation
    from components.generation_cache import GENERATIONS

    page.fill("#grains-gen-stop textarea", "")
    # a strength typed out of range is clamped by the slider: the page says so
    set_number(page, "grains-gen-strength", "1000")
    page.wait_for_selector("#grains-gen-strength .grains-clamp-note:has-text('1000 is outside -4 to 4: set to 4')")
    assert page.input_value("#grains-gen-strength input[type=number]") == "4"
    set_number(page, "grains-gen-strength", "0.5")

    # Stop while generating: the status says where it stopped, and stays so
    GENERATIONS.clear()  # computed, not served from the server's memory
    monkeypatch.setattr(grains.generation, "stream_pair", slowed(grains.generation.stream_pair, 0.15))
    set_number(page, "grains-max-tokens", "60")
    page.click("#grains-generate")
    page.wait_for_selector("#grains-gen-status:has-text('Generating')")
    page.click("#grains-stop")
    page.wait_for_selector("#grains-gen-status:has-text('Stopped after')")
    page.wait_for_timeout(1500)
    status = page.inner_text("#grains-gen-status")
    assert "Stopped after" in status and "Generating" not in status, status

    # the sweep shows each row as it finishes; Stop keeps the rows done
    set_number(page, "grains-max-tokens", "6")
    monkeypatch.setattr(grains.generation, "generate_one", slowed(grains.generation.generate_one, 0.4))
    strengths = page.locator("#grains-gen-sweep-strengths textarea, #grains-gen-sweep-strengths input").first
    strengths.fill("0, 0.5, 1, 2, 3, 4")  # 4 rows still to come when Stop is pressed
    page.click("#grains-gen-sweep")
    page.wait_for_selector("#grains-sweep-table tr.grains-sweep-waiting")  # rows shown before the sweep ends
    page.wait_for_function("document.querySelectorAll('#grains-sweep-table tbody tr:not(.grains-sweep-waiting)')"
                           ".length >= 2")
    page.screenshot(path=str(test_output_dir / "compare_sweep_streaming.png"), full_page=True)
    page.click("#grains-gen-sweep-stop")
    page.wait_for_selector("#grains-sweep-table:has-text('Sweep stopped by the user')")
    text = page.inner_text("#grains-sweep-table")
    assert "kept below" in text and "Nothing was kept" not in text
    assert page.locator("#grains-sweep-table tbody tr").count() >= 2
    assert page.locator("#grains-sweep-table tr.grains-sweep-waiting").count() == 0
    page.screenshot(path=str(test_output_dir / "compare_sweep_stopped.png"), full_page=True)


def test_evaluate_progress_stop_stale_and_row_numbers(page, app_server, vector_file, test_output_dir):
    open_app(page, app_server(MODEL), MODEL)
    load_vector(page, vector_file)
    page.click("#grains-tab-evaluate-button")
    page.wait_for_selector("#grains-eval-rows input[type=number]", state="visible")
    page.wait_for_timeout(500)
    page.locator("#grains-eval-offset input").fill("0")
    page.locator("#grains-eval-offset input").press("Enter")
    # Stop races the run's end (200 rows on the tiny model can finish within seconds, and on a loaded machine the
    # click can land after it): a run that finished first gets one more try, with 199 rows so its summary differs
    for rows in ("200", "199"):
        set_number(page, "grains-eval-rows", rows)
        # progress shows rows done and an estimate of the time left (the unsteered pass, or already the steered one)
        watch_for_text(page, rf"steered \d+/{rows} · .* so far, about .* left")
        page.click("#grains-evaluate")
        page.wait_for_function(SEEN_ANY, polling=100)
        page.locator("#grains-eval-stop").dispatch_event("click")  # at once, whatever the page is drawing
        page.wait_for_selector("#grains-eval-summary:has-text('Stopped by the user'), "
                               f"#grains-eval-summary:has-text('n = {rows} ·')")
        if "Stopped by the user" in page.inner_text("#grains-eval-summary"):
            break
    summary = page.inner_text("#grains-eval-summary")  # the batched scoring stops between passes
    assert re.search(r"after \d+ of (200|199) rows|Stopped by the user \((unsteered|steered)\)", summary), summary
    page.screenshot(path=str(test_output_dir / "evaluate_stopped.png"), full_page=True)

    set_number(page, "grains-eval-rows", "3")
    page.locator("#grains-eval-offset input").fill("40")
    page.locator("#grains-eval-offset input").press("Enter")
    page.click("#grains-evaluate")
    page.wait_for_selector("#grains-eval-summary:has-text('Took')")
    summary = page.inner_text("#grains-eval-summary")
    assert "too few items to test" in summary and "no interval is given" in summary and "Took" in summary  # 3 rows
    page.click("text=Per-item results (numbered by dataset row)")
    first_cells = [page.locator("#grains-eval-items tbody tr").nth(i).locator("td").first.inner_text()
                   for i in range(3)]
    assert first_cells == ["40", "41", "42"]
    table = page.locator("#grains-eval-items .grains-items-table")
    assert table.evaluate("el => el.scrollWidth <= el.clientWidth + 1")  # answers wrap, nothing off-screen

    set_number(page, "grains-eval-rows", "4")  # an input the result depends on
    page.wait_for_selector("#grains-eval-summary:has-text('Outdated')")
    assert "the number of rows changed" in page.inner_text("#grains-eval-summary")
    page.screenshot(path=str(test_output_dir / "evaluate_outdated.png"), full_page=True)
    assert page.dialogs == []


def test_show_code_loads_the_session_vector_file_and_real_rows(page, app_server, vector_file, test_output_dir):
    open_app(page, app_server(MODEL), MODEL)
    load_vector(page, vector_file)
    page.click("#grains-tab-evaluate-button")
    page.wait_for_selector("#grains-eval-rows input[type=number]", state="visible")
    page.wait_for_timeout(500)
    set_number(page, "grains-eval-rows", "2")
    page.locator("#grains-eval-offset input").fill("31")
    page.locator("#grains-eval-offset input").press("Enter")
    page.click("#grains-evaluate")
    page.wait_for_selector("#grains-eval-summary:has-text('Took')")
    page.set_viewport_size({"width": 1400, "height": 6000})  # CodeMirror renders only the lines in view
    page.click("#grains-tab-code-button")
    page.wait_for_selector("#grains-code-python:has-text('load_vector')")
    code = code_text(page, "grains-code-python")
    assert "grains.load_vector(HERE / 'my_uploaded_vector.safetensors')" in code and "build_vector" not in code
    assert "limit=2, offset=31" in code and "first_row=31" in code and "limit=20" not in code
    assert "layers=2, strength=1.5" in code  # the session's layer and strength
    shell = code_text(page, "grains-code-cli")
    assert "--vector my_uploaded_vector.safetensors" in shell and "grains build" not in shell
    page.screenshot(path=str(test_output_dir / "show_code_loaded_vector.png"), full_page=True)
    assert page.dialogs == []


def test_generate_without_a_vector_shows_the_unsteered_continuation_and_says_why_the_other_is_missing(
        page, app_server):
    """A session with no vector (the tiny model has no shipped one): Generate is not refused; the unsteered column
    fills, the steered column and the status say there is no vector and where to get one."""
    open_app(page, app_server(MODEL), MODEL)
    page.click("#grains-tab-compare-button")
    page.wait_for_selector("#grains-gen-vector:has-text('No steering vector')")
    assert "unsteered continuation alone" in page.inner_text("#grains-gen-vector")
    page.click("#grains-generate")
    page.wait_for_selector("#grains-gen-status:has-text('unsteered only')")
    page.wait_for_selector("#grains-gen-status .grains-note-warn")
    unsteered = page.inner_text("#grains-unsteered .grains-diff")
    assert unsteered.strip()
    steered = page.inner_text("#grains-steered")
    assert "no steering vector" in steered and "Steer tab" in steered
    assert "no vector in this session" in page.inner_text("#grains-steered-title")
    assert page.dialogs == []
