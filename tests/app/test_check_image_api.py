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


def test_new_scene_check_and_heatmap_against_the_true_boxes(url):
    c = Client(url, verbose=False)
    picture, scene = c.predict(1_200_000_000, api_name="/new_scene")
    assert scene["seed"] >= 1_200_000_000 and len(scene["absent"]) == 2
    b = scene["absent"][0]
    assert scene["adversarial"][b] in scene["present"] and set(scene["boxes"]) == set(scene["present"])
    report = c.predict(handle_file(picture), scene["present_text"], scene["absent_text"], "", "", None,
                       api_name="/check_image")
    assert report["image"]["digest"] == scene["digest"]
    assert [p["object"] for p in report["probes"]] == scene["present"] + scene["absent"]

    asked = scene["present"][0]
    overlay, info = c.predict(handle_file(picture), asked, "yes", scene, 4, api_name="/probe_heatmap")
    scores = info["grounding"]["scores"]
    x0, y0, x1, y1 = scene["boxes"][asked]
    # the tiny LLaVA resizes the 64 px scene to 48 px and crops nothing: the grid covers the whole picture
    assert scores[asked]["area_share"] == pytest.approx((x1 - x0) * (y1 - y0) / 64**2)
    assert 0 <= scores[asked]["mass_inside"] <= 1 and set(scores) == set(scene["present"])
    from PIL import Image

    assert Image.open(overlay).size == (384, 384)  # enlarged 6x so the outlines and labels are legible
    _, plain = c.predict(handle_file(picture), asked, "yes", None, 4, api_name="/probe_heatmap")
    assert "grounding" not in plain  # no scene given: no boxes
    _, other = c.predict(handle_file(str(PHOTO)), "cup", "yes", scene, 4, api_name="/probe_heatmap")
    assert "grounding" not in other  # a scene's boxes are never laid on another picture
