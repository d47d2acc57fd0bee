"""Issue 16 through gradio_client (tiny random models): a vector build stopped from another call ends cleanly with
no steering hook left and the previous vector kept; a negative strength is accepted; a non-image upload gives one
plain sentence with no server path."""

from __future__ import annotations

import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

PROMPT = "Q: What is the capital of France?\nA:"
CHOSEN, REJECTED = " Paris", " London"


def test_a_build_stopped_by_another_call_ends_cleanly_without_hooks(url):
    from components.model_cache import MODELS
    from grains.steering import active_hook_count

    c = Client(url, verbose=False)
    before = c.predict(api_name="/vector_info")
    job = c.submit("dataset", "truthfulqa", None, 64, 0, "grains", 5, 16, True, api_name="/build_vector")
    stopping, deadline = False, time.time() + 120
    while not stopping and not job.done() and time.time() < deadline:
        stopping = c.predict(api_name="/stop_build")["stopping"]
        time.sleep(0.2)
    assert stopping, "the build finished (or never started) before it could be stopped"
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=120)
    assert active_hook_count(MODELS.peek("tiny-random-llama")) == 0
    assert c.predict(api_name="/vector_info") == before  # the previous vector is kept, nothing half-built
    assert c.predict(api_name="/stop_build") == {"stopping": False}  # nothing left running
    _, scores, _ = c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")  # still serving
    assert scores["tokens"]


def test_the_download_name_says_model_dataset_method_and_layer(url):
    c = Client(url, verbose=False)
    summary, path = c.predict("dataset", "truthfulqa", None, 2, 0, "caa", 2, 2, False, api_name="/build_vector")
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    assert name == f"grains_tiny-random-llama_truthfulqa_caa_L{summary['layer']}.safetensors"


def test_a_negative_strength_is_accepted_and_steers(url):
    c = Client(url, verbose=False)
    c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
    c.predict("example", "", None, 1, 0, "grains", 2, 2, False, api_name="/build_vector")
    info = c.predict(api_name="/vector_info")
    out = c.predict(PROMPT, info["default_layer"], -1.0, 6, None, api_name="/generate")
    text = str(out)
    assert "must be from" not in text


def test_a_text_file_named_jpg_gives_one_plain_sentence_without_paths(url, tmp_path):
    c = Client(url, verbose=False)
    c.predict("tiny-random-llava", api_name="/load_model")
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo")
    with pytest.raises(AppError) as caught:
        c.predict("Is there a cat?", " Yes", " No", 2, handle_file(str(fake)), api_name="/attribute")
    message = str(caught.value)
    assert "not an image" in message
    assert "/tmp" not in message and "gradio" not in message.lower() and "Unidentified" not in message
