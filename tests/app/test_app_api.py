"""The app's named API endpoints through gradio_client, against one running app (tiny random models).

Every endpoint returns what its contract says; bad input comes back as an error (not a crash) and the next valid
call works; two clients with different vectors each get their own results.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

PROMPT = "Q: What is the capital of France?\nA:"
CHOSEN, REJECTED = " Paris", " London"
# Parameters in order; new ones are only ever added at the end, with defaults (older positional calls keep working).
CONTRACT = {
    "/attribute": ["prompt", "chosen", "rejected", "steps", "image", "target", "baseline", "prompt_format"],
    "/build_vector": ["source", "dataset", "file", "rows", "offset", "method", "k", "steps", "cross_validate",
                      "normalize", "prompt_format"],
    "/generate": ["prompt", "layer", "strength", "max_new_tokens", "image", "do_sample", "temperature", "top_p",
                  "seed", "normalize", "prompt_format", "stop"],
    "/evaluate": ["dataset", "file", "rows", "offset", "steered", "layer", "strength", "normalize",
                  "length_normalize", "prompt_format", "side_effects"],
    "/load_model": ["name"],
    "/select_tokens": ["k", "force_positive", "force_negative", "drop", "content_only", "skip_punctuation"],
    "/load_vector": ["vector_file", "allow_other_model"],
    "/vector_info": [],
    "/strength_sweep": ["prompt", "layer", "strengths", "max_new_tokens", "image", "normalize", "prompt_format",
                        "stop"],
    "/sweep": ["dataset", "file", "rows", "offset", "layers", "strengths", "normalize", "length_normalize",
               "prompt_format", "kl"],
}
OUT_OF_RANGE = "The steering strength must be from -4 to 4"
PHOTO = Path(__file__).resolve().parents[2] / "assets" / "images" / "astronaut.jpg"


def client(url: str) -> Client:
    """A new client = a new session (its own vector, example and model choice)."""
    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def built(url):
    """A client whose session has attributed an example and built a vector from it."""
    c = client(url)
    c.predict(PROMPT, CHOSEN, REJECTED, 4, None, api_name="/attribute")
    summary, path = c.predict("example", "", None, 1, 0, "grains", 2, 4, False, api_name="/build_vector")
    return c, summary, path


def test_endpoints_follow_the_contract(url):
    api = client(url).view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, params in CONTRACT.items():
        assert name in api, f"missing endpoint {name}"
        got = [p["parameter_name"] for p in api[name]["parameters"]]
        assert got == params, (name, got)
        added = params[len(params) - {"/attribute": 1, "/build_vector": 2, "/generate": 2, "/evaluate": 4,
                                      "/load_vector": 1, "/strength_sweep": 3, "/sweep": 4}.get(name, 0):]
        for param in api[name]["parameters"]:
            if param["parameter_name"] in added:
                assert param["parameter_has_default"], (name, param["parameter_name"])


def test_attribute_returns_heatmap_scores_and_delta(url):
    c = client(url)
    html, scores, delta = c.predict(PROMPT, CHOSEN, REJECTED, 4, None, api_name="/attribute")
    assert 'class="grains-tok' in html and "data-index" in html
    assert len(scores["tokens"]) == len(scores["scores"]) > 3
    assert math.isclose(delta, scores["delta"], rel_tol=1e-6, abs_tol=1e-9)
    total = sum(scores["plus_scores"]) + sum(scores["minus_scores"])
    assert math.isclose(total - (scores["f_input"] - scores["f_baseline"]), delta, rel_tol=1e-4, abs_tol=1e-5)
    assert scores["steps"] == 4 and scores["target"] == "sequence"
    sel = scores["selection"]["prompt"]
    assert sel["positive"] and sel["negative"]


def test_select_tokens_applies_overrides(url):
    c = client(url)
    _, scores, _ = c.predict(PROMPT, CHOSEN, REJECTED, 4, None, api_name="/attribute")
    content = [i for i, ok in enumerate(scores["content_mask"]) if ok]
    forced, dropped = content[0], content[-1]
    html, sel = c.predict(2, str(forced), "", str(dropped), True, False, api_name="/select_tokens")
    assert forced in sel["prompt"]["positive"] and forced in sel["plus"]["positive"]
    assert dropped not in sel["prompt"]["positive"] + sel["prompt"]["negative"]
    assert f'data-index="{forced}"' in html
    _, wide = c.predict(20, "", "", "", False, False, api_name="/select_tokens")  # k larger than the prompt
    for part in ("prompt", "plus", "minus"):
        assert not set(wide[part]["positive"]) & set(wide[part]["negative"]), part  # I+ and I- stay disjoint
    for part, tokens in (("plus", scores["plus_tokens"]), ("minus", scores["minus_tokens"])):
        assert len(tokens) - 1 not in wide[part]["positive"] + wide[part]["negative"]  # the read position


def test_build_vector_from_the_current_example(built):
    from grains.vectors import load_vector

    c, summary, path = built
    assert summary["n_examples"] == 1 and summary["method"] == "grains" and summary["k"] == 2
    vector = load_vector(path)
    assert vector.model_id == "tiny-random-llama" and vector.default_layer == summary["layer"]
    info = c.predict(api_name="/vector_info")
    assert info["n_examples"] == 1 and info["default_layer"] == summary["layer"]


def test_build_vector_from_a_dataset_with_cross_validation(url):
    c = client(url)
    summary, path = c.predict("dataset", "truthfulqa", None, 12, 0, "caa", 2, 2, True, api_name="/build_vector")
    assert summary["n_examples"] == 12 and summary["method"] == "caa"
    assert summary["selection"]["folds"] == 3 and summary["selection"]["table"]
    assert Path(path).suffix == ".safetensors"


def test_build_vector_from_an_uploaded_file(url, tmp_path):
    rows = [{"prompt": f"Q: Is {n} a number?\nA:", "chosen": " Yes", "rejected": " No"} for n in range(4)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    summary, _ = client(url).predict("dataset", "", handle_file(str(data)), 4, 0, "mean", 2, 2, False,
                                     api_name="/build_vector")
    assert summary["n_examples"] == 4 and summary["method"] == "mean"


def test_generate_returns_both_texts(built):
    c, summary, _ = built
    unsteered, steered = c.predict("Hello, how are", summary["layer"], 0.0, 6, None, api_name="/generate")
    assert isinstance(unsteered, str) and unsteered and unsteered == steered  # strength 0: identical
    unsteered2, steered2 = c.predict("Hello, how are", summary["layer"], 4.0, 6, None, api_name="/generate")
    assert unsteered2 == unsteered and isinstance(steered2, str)


def test_strength_sweep_lists_every_strength(built):
    c, summary, _ = built
    rows = c.predict("Hello", summary["layer"], "-1, 0, 1, 3", 5, None, api_name="/strength_sweep")
    assert [r[0] for r in rows] == [-1, 0, 1, 3] and all(isinstance(r[1], str) for r in rows)
    kl = {r[0]: r[3] for r in rows}  # each strength's side effect: mean KL on neutral prompts (nats)
    assert kl[0] == 0.0 and all(kl[s] > 0 for s in (-1, 1, 3))
    assert kl[3] > kl[1]  # the further it pushes, the more it moves neutral next-token distributions
    assert not any("best" in str(cell) for row in rows for cell in row)  # no row is named best


def test_evaluate_reports_before_after_with_significance(built):
    c, summary, _ = built
    result, csv_path = c.predict("truthfulqa", None, 4, 0, True, summary["layer"], 1.0, api_name="/evaluate")
    for key in ("n", "accuracy", "accuracy_unsteered", "mc1", "p_value", "gain_ci", "reading", "items"):
        assert key in result
    assert result["n"] == 4 and len(result["items"]) == 4 and 0 <= result["p_value"] <= 1
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0].startswith("#,question") and len(lines) == 5
    side = result["side_effects"]  # every steered result reports what it costs
    assert side["kl_mean"] > 0 and side["n_prompts"] >= 50 and "KL" in side["reading"]
    assert result["steering"]["normalize"] is True
    unsteered, _ = c.predict("hallucination_pairs", None, 3, 0, False, 0, 0, api_name="/evaluate")
    assert unsteered["steered"] is False and "answer_distribution" in unsteered and "side_effects" not in unsteered


def test_evaluate_takes_the_norm_switch_and_length_normalisation(built):
    """The keep-the-norm switch and length normalisation reach evaluation, and change the scores."""
    c, summary, _ = built
    kept, _ = c.predict("truthfulqa", None, 3, 0, True, summary["layer"], 2.0, True, False, "", False,
                        api_name="/evaluate")
    free, _ = c.predict("truthfulqa", None, 3, 0, True, summary["layer"], 2.0, False, True, "", False,
                        api_name="/evaluate")
    assert kept["steering"]["normalize"] is True and free["steering"]["normalize"] is False
    assert kept["length_normalization"] is False and free["length_normalization"] is True
    assert "side_effects" not in kept  # side_effects=False was asked
    assert kept["margin"] != free["margin"]


def test_sweep_grid(built):
    c, _, _ = built
    result, csv_path = c.predict("truthfulqa", None, 3, 0, "0, 1", "0.5, 2", api_name="/sweep")
    assert result["layers"] == [0, 1] and result["strengths"] == [0.5, 2.0]
    assert len(result["values"]) == 2 and len(result["values"][0]) == 2
    assert len(Path(csv_path).read_text().splitlines()) == 5


def test_sweep_reports_the_correction_and_the_number_of_cells(built):
    """Holm over the cells tested (strength 0 is not a test), significance from the adjusted p-values, the maximum
    labelled "best of N", and each cell's side effect (mean KL, 0 at strength 0)."""
    c, _, _ = built
    result, csv_path = c.predict("hallucination_pairs", None, 8, 0, "0, 1, 2", "0, -1, 2", True, False, "", True,
                                 api_name="/sweep")
    assert result["correction"] == "holm" and result["cells_tested"] == 6  # 3 layers x 2 non-zero strengths
    raw, adjusted = result["p_values"], result["p_values_adjusted"]
    for i in range(3):
        assert raw[i][0] is None and adjusted[i][0] is None and result["significant"][i][0] is False
        for j in (1, 2):
            assert adjusted[i][j] >= raw[i][j] - 1e-12 and adjusted[i][j] <= 1.0
            assert result["significant"][i][j] == (adjusted[i][j] < 0.05)
    flat = [(adjusted[i][j], raw[i][j]) for i in range(3) for j in (1, 2)]
    smallest = min(flat, key=lambda t: t[1])
    assert smallest[0] == pytest.approx(min(1.0, 6 * smallest[1]))  # Holm's first step: p x (cells tested)
    best = result["best_of_n"]
    assert best["label"] == "best of 6"
    assert best["gain"] == max(result["values"][i][j] for i in range(3) for j in (1, 2))
    assert [row[0] for row in result["kl"]] == [0.0, 0.0, 0.0] and all(row[2] > 0 for row in result["kl"])
    header = Path(csv_path).read_text().splitlines()[0]
    assert "Holm" in header and "KL" in header


def test_prompt_format_reaches_the_model(url):
    """raw: the model sees the prompt exactly as typed (its tokens join back to it); qa: "Q: ...\nA:"; the
    model's default (""), here chat, wraps it in the template."""
    c = client(url)
    typed = "My first day at the new job"
    _, raw, _ = c.predict(typed, " was great", " was awful", 2, None, "sequence", "zero", "raw",
                          api_name="/attribute")
    assert raw["prompt_text"] == typed and raw["prompt_format"] == "raw"
    words = "".join(t for t, special in zip(raw["tokens"], raw["special_mask"]) if not special)
    assert words == typed
    _, qa, _ = c.predict(typed, " was great", " was awful", 2, None, "sequence", "zero", "qa", api_name="/attribute")
    assert qa["prompt_text"] == f"Q: {typed}\nA:" and qa["prompt_format"] == "qa"
    assert "".join(t for t, special in zip(qa["tokens"], qa["special_mask"]) if not special) == f"Q: {typed}\nA:"
    _, default, _ = c.predict(typed, " was great", " was awful", 2, None, api_name="/attribute")  # old signature
    assert default["prompt_format"] == "chat" and typed in default["prompt_text"] != typed
    with pytest.raises(AppError, match="Unknown prompt format"):
        c.predict(typed, " a", " b", 2, None, "sequence", "zero", "markdown", api_name="/attribute")


def test_prompt_format_reaches_generation(built):
    """/generate's prompt_format is what the library gets: same texts as generate_pair in that format."""
    from grains.generation import GenerationSettings, generate_pair
    from grains.models import load_model
    from grains.vectors import load_vector

    c, summary, path = built
    lm = load_model("tiny-random-llama")
    for fmt in ("raw", "qa"):
        got = c.predict("The weather today", summary["layer"], 1.0, 6, None, False, 1.0, 1.0, 0, True, fmt,
                        api_name="/generate")
        want = generate_pair(lm, "The weather today", load_vector(path), summary["layer"], 1.0,
                             GenerationSettings(max_new_tokens=6), prompt_format=fmt)
        assert tuple(got) == (want.unsteered, want.steered), fmt


def test_negative_strength_is_accepted_and_out_of_range_refused_with_one_message(built):
    from grains.generation import GenerationSettings, generate_pair
    from grains.models import load_model
    from grains.vectors import load_vector

    c, summary, path = built
    layer = summary["layer"]
    unsteered, steered = c.predict("The weather today", layer, -2.0, 6, None, api_name="/generate")
    want = generate_pair(load_model("tiny-random-llama"), "The weather today", load_vector(path), layer, -2.0,
                         GenerationSettings(max_new_tokens=6))
    assert (unsteered, steered) == (want.unsteered, want.steered)  # the sign reached the model
    result, _ = c.predict("truthfulqa", None, 2, 0, True, layer, -1.0, True, False, "", False, api_name="/evaluate")
    assert result["strength"] == -1.0
    messages = set()
    for endpoint, args in (("/generate", ("Hi", layer, 5, 3, None)),
                           ("/evaluate", ("truthfulqa", None, 2, 0, True, layer, 5)),
                           ("/sweep", ("truthfulqa", None, 2, 0, str(layer), "0.5, 5")),
                           ("/strength_sweep", ("Hi", layer, "0, 5", 3, None))):
        with pytest.raises(AppError) as info:
            c.predict(*args, api_name=endpoint)
        messages.add(str(info.value))
    assert len(messages) == 1 and OUT_OF_RANGE in messages.pop()


def test_load_vector_checks_it_fits(url, built, tmp_path):
    import torch

    from grains.vectors import SteeringVector

    _, _, path = built
    c = client(url)
    info = c.predict(handle_file(path), api_name="/load_vector")
    assert info["model_id"] == "tiny-random-llama" and info["warnings"] == []
    other = SteeringVector(directions={0: torch.ones(7)}, layer_norms={0: 1.0}, model_id="other", hidden_size=7,
                           num_layers=1, default_layer=0)
    wrong = other.save(tmp_path / "wrong.safetensors")
    with pytest.raises(AppError, match="hidden size"):
        c.predict(handle_file(str(wrong)), api_name="/load_vector")
    pickle = tmp_path / "evil.safetensors"
    pickle.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(AppError):
        c.predict(handle_file(str(pickle)), api_name="/load_vector")
    assert c.predict(api_name="/vector_info")["model_id"] == "tiny-random-llama"  # the good vector is kept


def test_a_vector_from_another_model_is_refused_unless_allowed(url, built, tmp_path):
    from grains.vectors import load_vector

    _, summary, path = built
    vector = load_vector(path)
    vector.model_id = "some-other-model"  # same shapes, another model
    other = str(vector.save(tmp_path / "other.safetensors"))
    c = client(url)
    with pytest.raises(AppError, match="built for 'some-other-model', not for 'tiny-random-llama'"):
        c.predict(handle_file(other), api_name="/load_vector")
    with pytest.raises(AppError, match="built for"):
        c.predict(handle_file(other), False, api_name="/load_vector")
    info = c.predict(handle_file(other), True, api_name="/load_vector")
    assert info["model_id"] == "some-other-model" and info["allow_other_model"] is True
    assert any("another model" in w for w in info["warnings"])
    unsteered, steered = c.predict("Hello", summary["layer"], 0.0, 4, None, api_name="/generate")
    assert unsteered == steered  # allowed: every path steers with it
    result, _ = c.predict("truthfulqa", None, 2, 0, True, summary["layer"], 1.0, True, False, "", False,
                          api_name="/evaluate")
    assert result["steering"]["vector_model_id"] == "some-other-model"


BAD_CALLS = [
    ("/attribute", ("", CHOSEN, REJECTED, 4, None), "empty"),
    ("/attribute", (PROMPT, " same", " same", 4, None), "identical"),
    ("/attribute", (PROMPT, CHOSEN, REJECTED, 0, None), "steps"),
    ("/attribute", (PROMPT, CHOSEN, REJECTED, 2.5, None), "whole number"),
    ("/attribute", (PROMPT, CHOSEN, REJECTED, 4, "PHOTO"), "text-only"),
    ("/generate", (PROMPT, 99, 0.5, 5, None), "out of range"),
    ("/generate", (PROMPT, 0, 5, 5, None), "from -4 to 4"),
    ("/generate", (PROMPT, 0, 0.5, 5, None, False, 1.0, 1.0, 0, True, "chat-ish"), "Unknown prompt format"),
    ("/generate", (PROMPT, 0, 0.5, 0, None), "max_new_tokens"),
    ("/build_vector", ("bogus", "truthfulqa", None, 2, 0, "grains", 2, 2, False), "source"),
    ("/build_vector", ("dataset", "no-such-set", None, 2, 0, "grains", 2, 2, False), "Unknown dataset"),
    ("/build_vector", ("dataset", "truthfulqa", None, 2, 0, "magic", 2, 2, False), "Unknown method"),
    ("/evaluate", ("pope_style", None, 2, 0, False, 0, 0.5), "vision-language"),
    ("/evaluate", ("truthfulqa", None, 0, 0, False, 0, 0.5), "rows"),
    ("/select_tokens", (2, "9999", "", "", True, False), "out of range"),
    ("/select_tokens", (2, "3", "3", "", True, False), "both I\\+ and I-"),
    ("/load_model", ("/no/such/model/dir",), "not a preset"),
    ("/sweep", ("truthfulqa", None, 2, 0, "0, x", "0.5"), "not a number"),
]


@pytest.fixture(scope="module")
def session_with_a_vector(url):
    """One session, shared by the bad-input cases: it has attributed an example and built a vector, so every
    endpoint can be called (each case then shows the same session still serves after its bad call)."""
    c = client(url)
    c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
    c.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    return c


@pytest.mark.parametrize("endpoint,args,message", BAD_CALLS, ids=[f"{e}-{m}" for e, _, m in BAD_CALLS])
def test_bad_input_is_an_error_and_the_app_keeps_serving(session_with_a_vector, endpoint, args, message):
    c = session_with_a_vector
    args = tuple(handle_file(str(PHOTO)) if a == "PHOTO" else a for a in args)
    with pytest.raises(AppError, match=message):
        c.predict(*args, api_name=endpoint)
    _, scores, _ = c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")  # still serving
    assert scores["tokens"]


def test_a_non_image_upload_is_an_error(url, tmp_path):
    c = client(url)
    c.predict("tiny-random-llava", api_name="/load_model")
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"this is not a picture")
    with pytest.raises(AppError):
        c.predict("Is there a cat?", " Yes", " No", 2, handle_file(str(fake)), api_name="/attribute")
    assert client(url).predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")[1]["tokens"]


def vlm_client(url: str) -> Client:
    c = client(url)
    info = c.predict("tiny-random-llava", api_name="/load_model")
    assert info["kind"] == "VLM" and info["random_weights"] is True and info["vector"] is None
    return c


def test_vlm_session_attributes_an_image_and_builds(url):
    c = vlm_client(url)
    html, scores, _ = c.predict("Is there a person in the image?", " Yes", " No", 2, handle_file(str(PHOTO)),
                                api_name="/attribute")
    assert scores["image_grid"] and any(scores["image_mask"]) and 0 <= scores["extra"]["image_share"] <= 1
    summary, _ = c.predict("example", "", None, 1, 0, "grains", 2, 2, False, api_name="/build_vector")
    assert summary["n_examples"] == 1
    pope, _ = c.predict("pope_style", None, 4, 0, True, summary["layer"], 0.5, api_name="/evaluate")
    assert pope["kind"] == "probes" and pope["n"] == 4 and "f1" in pope and "yes_ratio_unsteered" in pope
    back = c.predict("tiny-random-llama", api_name="/load_model")
    assert back["kind"] == "LLM" and back["vector"] is None  # the VLM's vector does not fit the LLM


def test_vlm_session_generates_with_an_image(url):
    c = vlm_client(url)
    c.predict("Is there a person in the image?", " Yes", " No", 2, handle_file(str(PHOTO)), api_name="/attribute")
    summary, _ = c.predict("example", "", None, 1, 0, "grains", 2, 2, False, api_name="/build_vector")
    texts = c.predict("Describe the image.", summary["layer"], 1.0, 4, handle_file(str(PHOTO)), api_name="/generate")
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_a_failed_model_load_keeps_the_previous_model(url):
    c = client(url)
    c.predict(PROMPT, CHOSEN, REJECTED, 2, None, api_name="/attribute")
    c.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    with pytest.raises(AppError):
        c.predict("/definitely/not/a/model", api_name="/load_model")
    assert c.predict(api_name="/vector_info")["model_id"] == "tiny-random-llama"
    assert c.predict("Hi", 0, 0.5, 3, None, api_name="/generate")


def test_two_concurrent_clients_keep_their_own_vectors(url):
    from grains.generation import GenerationSettings, generate_pair
    from grains.models import load_model
    from grains.vectors import load_vector

    a, b = client(url), client(url)
    a.predict("Q: Is the sky blue?\nA:", " Yes", " No", 2, None, api_name="/attribute")
    b.predict("Q: Which animal barks?\nA:", " A dog", " A fish", 2, None, api_name="/attribute")
    _, path_a = a.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    _, path_b = b.predict("example", "", None, 1, 0, "grains", 3, 2, False, api_name="/build_vector")
    assert a.predict(api_name="/vector_info")["method"] == "caa"
    assert b.predict(api_name="/vector_info")["method"] == "grains"

    prompt, results = "The weather today is", {}

    def run(name: str, c: Client) -> None:
        results[name] = [c.predict(prompt, 1, 3.0, 8, None, api_name="/generate") for _ in range(2)]

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    lm = load_model("tiny-random-llama")  # same seed, same weights as the server's
    for name, path in (("a", path_a), ("b", path_b)):
        expected = generate_pair(lm, prompt, load_vector(path), 1, 3.0, GenerationSettings(max_new_tokens=8))
        for unsteered, steered in results[name]:
            assert (unsteered, steered) == (expected.unsteered, expected.steered), name


def test_show_code_runs_and_reproduces_the_settings(tmp_path, monkeypatch):
    """The "Show code" Python script runs as is; its CLI attribution command parses and runs."""
    import subprocess
    import sys

    from components.session import Session
    from components.show_code import cli_code, python_code

    cfg = {"prompt": "Q: Is it 'safe'?\nA:", "chosen": " Yes", "rejected": " No", "steps": 2, "target": "sequence",
           "baseline": "zero", "k": 2, "content_only": True, "layer": 1, "strength": 0.5, "build_source": "dataset",
           "build_dataset": "truthfulqa", "build_rows": 3, "build_method": "caa", "build_select": False,
           "gen_prompt": "Hello", "max_new_tokens": 3, "eval_dataset": "truthfulqa", "eval_rows": 2, "eval_offset": 24}
    session = Session(model_name="tiny-random-llama")
    session.overrides["force_positive"] = [3]
    cfg.update({"prompt_format": "raw", "gen_prompt_format": "qa", "eval_prompt_format": "raw", "normalize": False})
    code = python_code(cfg, session)
    assert "force_positive=[3]" in code and "k=2" in code and "layers=1, strength=0.5, normalize=False" in code
    assert "baseline='zero', prompt_format='raw')" in code and "settings=settings, prompt_format='qa')" in code
    assert "side_effects=True, prompt_format='raw')" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__file__": str(tmp_path / "show_code.py")}  # the script reads and writes beside itself
    exec(compile(code, "show_code.py", "exec"), namespace)  # noqa: S102 - our own generated code
    assert namespace["report"].n == 2 and (tmp_path / "my_vector.safetensors").is_file()
    assert namespace["result"].prompt_text == cfg["prompt"]  # raw: exactly what was typed
    assert namespace["pair"].prompt_text == "Q: Hello\nA:"  # qa, as chosen on the Compare tab
    assert namespace["report"].steering["normalize"] is False and "reading" in namespace["report"].side_effects
    shell = cli_code(cfg, session)
    assert shell.count("--prompt-format raw") == 3 and "--prompt-format qa" in shell  # attribute, build, eval; gen
    assert shell.count("--no-normalize") == 3  # build, generate, eval
    attribute_cmd = shell.split("\n\n")[0].split("\n", 1)[1].replace("python -m", f"{sys.executable} -m", 1)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(["bash", "-c", attribute_cmd], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
