"""Safe files and safe serving: vectors are read as safetensors/JSON only (never unpickled), trust_remote_code stays
off unless asked, uploads are size-capped, the running app serves no file outside its assets and upload temp dir,
and HTML in user text (model names, answers) is rendered as text in the browser."""

from __future__ import annotations

import ast
import inspect
import pickle
from pathlib import Path
from typing import Any

import pytest

from grains.errors import ModelLoadError, VectorError
from tests.robustness.bad_inputs import PICKLE_MARKER, SCRIPT_PROMPT, TEXT_MODEL, make_file

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [ROOT / "grains", ROOT / "components"]


def python_sources() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in d.rglob("*.py")]
    return files + ([ROOT / "app.py"] if (ROOT / "app.py").exists() else [])


# ---------------------------------------------------------------- files


def test_nothing_unpickles_anywhere():
    """No pickle, torch.load or numpy allow_pickle in the library or the app."""
    for path in python_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names), path
            if isinstance(node, ast.Attribute) and node.attr == "load" and isinstance(node.value, ast.Name):
                assert node.value.id not in ("torch", "pickle", "joblib"), f"{path}:{node.lineno}"
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert not (isinstance(node.value, ast.Constant) and node.value.value), f"{path}:{node.lineno}"


def test_vectors_load_without_any_unpickler(tmp_path, monkeypatch):
    """With every unpickler booby-trapped, a valid vector still loads and a disguised pickle is refused."""
    import torch

    from grains.vectors import load_vector

    def trap(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(pickle, "loads", trap)
    monkeypatch.setattr(pickle, "Unpickler", trap)
    monkeypatch.setattr(torch, "load", trap)
    vector = load_vector(make_file("valid.safetensors", tmp_path))
    assert vector.model_id == TEXT_MODEL
    for name in ("pickle.safetensors", "torch_save.safetensors"):
        with pytest.raises(VectorError, match="pickle"):
            load_vector(make_file(name, tmp_path))
    assert not (tmp_path / PICKLE_MARKER).exists()


def test_vector_files_are_size_capped(tmp_path, monkeypatch):
    import grains.vectors
    from grains.vectors import load_vector

    path = tmp_path / "big.safetensors"
    with path.open("wb") as fh:  # sparse
        fh.truncate(grains.vectors.MAX_VECTOR_BYTES + 1)
    with pytest.raises(VectorError, match="limit"):
        load_vector(path)


# ---------------------------------------------------------------- trust_remote_code


def test_trust_remote_code_is_off_by_default(monkeypatch):
    import grains.models
    from grains.cli import build_parser

    assert inspect.signature(grains.models.load_model).parameters["trust_remote_code"].default is False
    parser = build_parser()
    base = ["attribute", "--prompt", "p", "--chosen", "a", "--rejected", "b"]
    assert parser.parse_args(base).trust_remote_code is False
    assert parser.parse_args([*base, "--trust-remote-code"]).trust_remote_code is True

    seen: list[dict[str, Any]] = []

    def fake_from_pretrained(source: str, model_id: str, device: Any, dtype: Any, trust_remote_code: bool,
                             *args: Any, **kwargs: Any) -> Any:
        seen.append({"source": source, "trust_remote_code": trust_remote_code})
        raise OSError("stop here")

    monkeypatch.setattr(grains.models, "_from_pretrained", fake_from_pretrained)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError):
        grains.models.load_model("someone/some-model")
    assert seen and all(call["trust_remote_code"] is False for call in seen), seen


def test_the_app_and_cli_never_turn_trust_remote_code_on_by_themselves():
    """The only `trust_remote_code=` arguments in the app and library are the user's flag or False."""
    for path in python_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                value = node.value
                literal_true = isinstance(value, ast.Constant) and value.value is True
                assert not literal_true, f"{path}:{node.lineno} passes trust_remote_code=True"


def test_the_apps_model_cache_loads_without_remote_code(monkeypatch):
    import grains.models
    from components.model_cache import ModelCache

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(grains.models, "load_model", lambda *a, **k: calls.append((a, k)) or object())
    ModelCache().get("owner/name")
    assert calls and not calls[0][1].get("trust_remote_code", False)


# ---------------------------------------------------------------- the running app


@pytest.fixture(scope="module")
def url(app_server) -> str:
    pytest.importorskip("app")
    return app_server(TEXT_MODEL).rstrip("/")


def _get(url: str) -> tuple[int, bytes]:
    import httpx

    with httpx.Client(timeout=30, follow_redirects=False) as http:
        response = http.get(url)
        return response.status_code, response.content


SECRET_MARKERS = (b"root:x:0:0", b"root:*:0:0", b"def build_app", b"[core]", b"PATH=")
TRAVERSALS = [
    "/gradio_api/file=/etc/passwd",
    "/file=/etc/passwd",
    "/gradio_api/file=../../../../../../etc/passwd",
    "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=%2fetc%2fpasswd",
    "/gradio_api/file=/tmp/gradio/../../etc/passwd",
    "/gradio_api/file=/tmp/gradio/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file=//etc/passwd",
    "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file=app.py",
    "/gradio_api/file={root}/app.py",
    "/gradio_api/file={root}/.git/config",
    "/gradio_api/file={root}/assets/../app.py",
    "/gradio_api/file={root}/grains/models.py",
    "/file={root}/app.py",
    "/static/../../../../etc/passwd",
    "/assets/../../../../etc/passwd",
    "/gradio_api/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_file_outside_the_allowed_places_is_served(url, path):
    status, body = _get(url + path.format(root=ROOT))
    assert status in (400, 403, 404, 405), (status, body[:200])
    assert not any(marker in body for marker in SECRET_MARKERS), body[:200]


def test_uploaded_files_are_served_back(url, tmp_path):
    """The control for the test above: the file route works for the app's own upload dir."""
    import httpx

    sample = tmp_path / "hello.txt"
    sample.write_text("hello from the test\n")
    with httpx.Client(timeout=30) as http:
        response = http.post(url + "/gradio_api/upload", files={"files": ("hello.txt", sample.read_bytes())})
        assert response.status_code == 200, response.text
        served = response.json()[0]
        got = http.get(f"{url}/gradio_api/file={served}")
    assert got.status_code == 200 and got.content == b"hello from the test\n"


def test_uploads_are_size_capped(url):
    """An upload over the app's max_file_size (25 MB) is refused, and the app keeps serving."""
    import httpx

    from components.session import MAX_UPLOAD

    assert MAX_UPLOAD.lower().endswith("mb") and int(MAX_UPLOAD[:-2]) <= 100
    big = b"\0" * (int(MAX_UPLOAD[:-2]) * 1024 * 1024 + 1024)
    with httpx.Client(timeout=120) as http:
        response = http.post(url + "/gradio_api/upload", files={"files": ("big.jsonl", big)})
        assert response.status_code in (400, 413), (response.status_code, response.text[:200])
        assert "big.jsonl" not in response.text or "size" in response.text.lower()
        small = http.post(url + "/gradio_api/upload", files={"files": ("small.jsonl", b"{}\n")})
        assert small.status_code == 200


def test_app_binds_loopback_by_default():
    app = pytest.importorskip("app")

    assert app.parse_args([]).host == "127.0.0.1"
    assert app.parse_args(["--classroom"]).host == "127.0.0.1"


# ---------------------------------------------------------------- HTML in user text, in the browser
# Extends tests/app/test_app_browser.py (HTML in the prompt renders as text in the heatmap).

@pytest.fixture(scope="module")
def browser_page(url, browser):
    """One page for this module's browser checks, on the session's shared Chromium (tests/conftest.py)."""
    from tests.conftest import open_page

    page = open_page(browser, 120_000)
    yield page
    page.context.close()


def open_fresh(page: Any, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector(f"#grains-model-card:has-text('{TEXT_MODEL}')")


HANDLERS = "[onerror], [onload], [onmouseover], [onclick], script"


@pytest.mark.browser
def test_html_in_answers_renders_as_text(url, browser_page):
    """HTML in the prompt and in both answers: shown as text in the heatmap and the sequence view; nothing runs."""
    page = browser_page
    open_fresh(page, url)
    page.fill("#grains-prompt textarea", SCRIPT_PROMPT)
    page.fill("#grains-chosen textarea, #grains-chosen input", " <b onmouseover=alert('c')>yes</b>")
    page.fill("#grains-rejected textarea, #grains-rejected input", " <svg onload=alert('r')>")
    page.click("#grains-attribute")
    page.wait_for_selector("#grains-heatmap .grains-tok")
    heat = page.locator("#grains-heatmap")
    assert heat.locator(f"img, svg, b, {HANDLERS}").count() == 0
    assert "onerror=alert(1)>" in heat.inner_text().replace("\n", "")
    for selector in ("#grains-sequences", "#grains-attr-summary"):
        assert page.locator(selector).locator(HANDLERS).count() == 0, selector
    page.locator("#grains-heatmap .grains-tok").first.hover()
    page.wait_for_timeout(300)
    assert page.dialogs == [], f"a script ran: {page.dialogs}"


@pytest.mark.browser
def test_html_in_a_model_name_does_not_run_in_the_error_message(url, browser_page):
    """A model name that is HTML comes back in the error toast as text: no script runs, no link or image appears."""
    page = browser_page
    open_fresh(page, url)
    evil = "<img src=x onerror=alert('model')><a href='https://evil.example/'>click me</a>"
    page.fill("#grains-custom-model textarea, #grains-custom-model input", evil)
    page.click("#grains-load-model")
    toast = page.locator("[data-testid='toast-text']").first
    toast.wait_for()
    page.wait_for_timeout(500)
    assert page.dialogs == [], f"a script ran: {page.dialogs}"
    assert toast.locator(HANDLERS).count() == 0
    assert "is not a preset" in toast.inner_text()
    assert toast.locator("a, img").count() == 0, "the error message must be shown as text, not rendered as HTML"
    assert "click me" in toast.inner_text() and "<a href" in toast.inner_text()
