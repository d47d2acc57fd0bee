"""The /check_image endpoint through gradio_client (tiny random VLM): the report JSON, a held-out re-check, and bad
input as one clear error after which the app keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

PHOTO = Path(__file__).resolve().parents[2] / "assets" / "images" / "coffee.jpg"


@pytest.fixture(scope="module")
def url(app_server) -> str:
    return app_server("tiny-random-llava")


def test_check_image_endpoint(url):
    c = Client(url, verbose=False)
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]["/check_image"]
    assert [p["parameter_name"] for p in api["parameters"]] == ["image_file", "present_text", "absent_text",
                                                                 "setting_value", "build_from", "strength_value"]
    report = c.predict(handle_file(str(PHOTO)), "cup, spoon", "fork, laptop", "", "", None, api_name="/check_image")
    assert report["n"] == 4 and report["random_weights"] is True and report["steered"] is None
    assert [p["truth"] for p in report["probes"]] == ["yes", "yes", "no", "no"]
    assert report["unsteered"]["yes_ratio"] == sum(p["answer"] == "yes" for p in report["probes"]) / 4

    proposed = c.predict(handle_file(str(PHOTO)), "cup, spoon", "", "popular", "", None, api_name="/check_image")
    assert proposed["setting"] == "popular" and [p["object"] for p in proposed["probes"]][2:] == ["person", "car"]

    rechecked = c.predict(handle_file(str(PHOTO)), "cup, spoon, saucer", "fork, laptop, cat", "", "probes", 1.0,
                          api_name="/check_image")
    split = rechecked["split"]
    assert not set(split["build_ids"]) & set(split["check_ids"])
    assert rechecked["n"] == split["n_check"] == len(rechecked["probes"])
    assert rechecked["steering"]["strength"] == 1.0 and rechecked["mcnemar"]["n"] == rechecked["n"]


def test_bad_input_is_one_error_and_the_app_keeps_serving(url):
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="listed both as present and as absent"):
        c.predict(handle_file(str(PHOTO)), "cup", "Cups", "", "", None, api_name="/check_image")
    with pytest.raises(AppError, match="limit is 50"):
        c.predict(handle_file(str(PHOTO)), ",".join(f"o{i}" for i in range(500)), "", "", "", None,
                  api_name="/check_image")
    c.predict("tiny-random-llama", api_name="/load_model")
    with pytest.raises(AppError, match="text-only"):
        c.predict(handle_file(str(PHOTO)), "cup", "fork", "", "", None, api_name="/check_image")
    c.predict("tiny-random-llava", api_name="/load_model")
    report = c.predict(handle_file(str(PHOTO)), "cup", "fork", "", "", None, api_name="/check_image")
    assert report["n"] == 2
