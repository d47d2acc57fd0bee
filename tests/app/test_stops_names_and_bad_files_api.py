"""Through gradio_client (tiny random models): a vector build stopped from another call ends cleanly with
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


# ------------------------------------------------------------------- one sentence for every error, on every tab

def no_internals(message: str) -> bool:
    return ("/tmp" not in message and "gradio" not in message.lower() and "preprocess" not in message
            and "Unidentified" not in message and "Traceback" not in message)


def test_a_text_file_named_jpg_on_compare_gives_the_same_sentence(url, tmp_path):
    c = Client(url, verbose=False)
    c.predict("tiny-random-llava", api_name="/load_model")
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo")
    with pytest.raises(AppError) as caught:
        c.predict("Is there a cat?", 0, 0.5, 4, handle_file(str(fake)), api_name="/generate")
    message = str(caught.value)
    assert "That file is not an image we can read" in message and no_internals(message), message


def test_dataset_errors_name_the_file_without_the_server_path(url, tmp_path):
    c = Client(url, verbose=False)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{not json\n')
    with pytest.raises(AppError) as caught:
        c.predict("uploaded file", handle_file(str(broken)), 5, 0, False, 0, 0.5, True, False, "", False,
                  api_name="/evaluate")
    message = str(caught.value)
    assert message.startswith("broken.jsonl:2: this line is not valid JSON") and no_internals(message), message
    array = tmp_path / "pairs.json"  # a JSON array, as a .json file: refused with the way to fix it
    array.write_text('[\n {"prompt": "a", "chosen": "b", "rejected": "c"}\n]\n')
    with pytest.raises(AppError) as caught:
        c.predict("dataset", "", handle_file(str(array)), 4, 0, "mean", 2, 2, False, api_name="/build_vector")
    message = str(caught.value)
    assert message.startswith("pairs.json:") and "one object per line" in message and no_internals(message), message
    pickers = [comp["props"] for comp in c.config["components"]
               if str(comp.get("props", {}).get("label", "")).startswith("Dataset file")]
    assert len(pickers) == 2 and all(".json" not in p["file_types"] for p in pickers)  # no longer offered


def test_a_build_whose_claim_cannot_be_tested_is_refused_before_it_starts(url):
    from grains.crossval import min_items_for_claim

    c = Client(url, verbose=False)
    need = min_items_for_claim(folds=3)
    start = time.perf_counter()
    with pytest.raises(AppError) as caught:
        c.predict("dataset", "truthfulqa", None, need - 1, 0, "caa", 2, 2, True, api_name="/build_vector")
    message = str(caught.value)
    assert f"at least {need} rows" in message and "untick" in message and "Nothing was started" in message
    assert time.perf_counter() - start < 30  # refused at once, not after the build
    summary, _ = c.predict("dataset", "truthfulqa", None, need - 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    assert summary["n_examples"] == need - 1  # without the claim it builds


def test_top_k_outlines_say_which_set_and_why(url):
    import re

    c = Client(url, verbose=False)
    c.predict("The pizza from that new delivery app", " arrived hot.", " arrived cold.", 2, None,
              api_name="/attribute")
    html, _ = c.predict(20, "", "", "", True, False, api_name="/select_tokens")  # k larger than the tokens
    spans = re.findall(r'<span class="(grains-tok[^"]*)" data-index="\d+" data-score="([^"]+)" title="([^"]*)"', html)
    negatives = [(cls, float(score), title) for cls, score, title in spans if "grains-sel-neg" in cls]
    positives = [(cls, float(score), title) for cls, score, title in spans if "grains-sel-pos" in cls]
    assert negatives and positives
    for cls, score, title in negatives + positives:
        against = ("grains-sel-neg" in cls and score > 0) or ("grains-sel-pos" in cls and score < 0)
        assert ("grains-sel-by-rank" in cls) == against, (cls, score)
        assert ("in I−" in title or "in I+" in title) and (("by rank only" in title) == against), title
    assert any("grains-sel-by-rank" in cls for cls, _, _ in negatives + positives)  # with k = 20 some must be
    assert "by rank only" in html  # the legend names the dashed outline
