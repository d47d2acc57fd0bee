"""The bad-input corpus through the running app (gradio_client, tiny models, loopback): every bad case comes back as
an error message (not a crash), the cases that must work give finite results, and the next valid request works."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

gradio_client = pytest.importorskip("gradio_client")
pytest.importorskip("app")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from tests.robustness.bad_inputs import (  # noqa: E402
    CASES,
    CHOSEN,
    PROMPT,
    REJECTED,
    TEXT_MODEL,
    VLM_MODEL,
    Case,
    all_finite,
    ids,
    make_file,
    resolve,
)

APP_CASES = [case for case in CASES if case.app]
# A vector built for another model whose shapes fit is refused in the app as everywhere (unless the user ticks
# "allow a vector from another model"; tests/app/test_app_api.py covers that path), so no case only warns.
WARN_IN_APP: dict[str, str] = {}
# Refused by Gradio's upload limit before the app sees the file.
UPLOAD_REFUSED = {"dataset-100mb"}
# The app's top-k clips k to the tokens there are (as `build` does) instead of refusing it.
CLIPPED_IN_APP = {"k-more-than-tokens"}
# Gradio's own gr.Image preprocessing opens the upload before the app's handler runs, so the user sees Gradio's
# "Could not preprocess input component ..." (with a server path) instead of grains' ImageError sentence.


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_app")


@pytest.fixture(scope="module")
def clients(app_server) -> dict[str, Client]:
    """One text session with an attribution and a vector, one VLM session."""
    url = app_server(TEXT_MODEL)
    text = Client(url, verbose=False)
    text.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
    text.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    vlm = Client(url, verbose=False)
    assert vlm.predict(VLM_MODEL, api_name="/load_model")["kind"] == "VLM"
    return {TEXT_MODEL: text, VLM_MODEL: vlm}


def json_safe(value: Any) -> Any:
    """JSON has no NaN/inf (gradio_client refuses them): send them as the strings a Number field parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def call(case: Case, c: Client, args: dict[str, Any]) -> Any:
    surface = case.surface
    args = {k: json_safe(v) for k, v in args.items()}
    if surface == "attribute":
        return c.predict(args["prompt"], args["chosen"], args["rejected"], args["steps"], None, api_name="/attribute")
    if surface == "select":
        return c.predict(args["k"], "", "", "", True, False, api_name="/select_tokens")
    if surface == "generate":
        return c.predict(args["prompt"], args["layer"], args["strength"], args["max_new_tokens"], None,
                         api_name="/generate")
    if surface == "image":
        return c.predict("Is there a cat in the image?", " Yes", " No", 2, handle_file(args["image"]),
                         api_name="/attribute")
    if surface == "dataset":
        return c.predict("dataset", "", handle_file(args["file"]), 2, 0, "mean", 2, 2, False,
                         api_name="/build_vector")
    if surface == "vector":
        return c.predict(handle_file(args["vector"]), api_name="/load_vector")
    if surface == "model":
        return c.predict(args["name"], api_name="/load_model")
    raise AssertionError(surface)


def still_serving(c: Client, model: str, folder: Path) -> None:
    """The session's next valid request works (and the session kept its model)."""
    if model == VLM_MODEL:
        image = handle_file(str(make_file("one_pixel.png", folder)))
        _, scores, _ = c.predict("Is there a cat?", " Yes", " No", 2, image, api_name="/attribute")
        assert scores["image_grid"]
    else:
        _, scores, _ = c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
        unsteered, steered = c.predict("Hello there", 1, 0.0, 3, None, api_name="/generate")
        assert unsteered == steered
    assert scores["tokens"]


@pytest.mark.parametrize("case", APP_CASES, ids=ids(APP_CASES))
def test_case_through_the_app(case, clients, folder, monkeypatch):
    c = clients[case.model]
    args = resolve(case.args, folder)
    for key, value in case.extra.get("env", {}).items():  # the app runs in this process
        monkeypatch.setenv(key, value)
    if case.ok:
        html, scores, delta = call(case, c, args)
        assert all_finite(scores["scores"]) and all_finite(scores["plus_scores"]) and delta == delta
        assert isinstance(html, str) and "grains-tok" in html
        if case.surface == "image":
            assert scores["image_grid"] and all_finite(scores["image_grid"])
    elif case.id in WARN_IN_APP:
        info = call(case, c, args)
        assert any(WARN_IN_APP[case.id] in w for w in info["warnings"]), info
    elif case.id in CLIPPED_IN_APP:
        _, selection = call(case, c, args)
        content = sum(1 for tok in selection["prompt"]["positive"])
        assert 0 < content < args["k"], selection
    elif case.id in UPLOAD_REFUSED:
        with pytest.raises(Exception) as info:  # refused at upload: an HTTP error, or an AppError from the app
            call(case, c, args)
        assert "Traceback" not in str(info.value)
    else:
        with pytest.raises(AppError) as info:
            call(case, c, args)
        message = str(info.value)
        assert case.fragment.lower() in message.lower(), message
        assert "Traceback" not in message and "Unexpected" not in message, message
    still_serving(c, case.model, folder)
