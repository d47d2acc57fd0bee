"""Panel helpers: outdated marking, one-status event options, progress with an estimate, the image upload
check, token labels for image patches, collapsed template tokens, excluded tokens drawn apart, the bar chart,
vector file names, the strength-0 note, the preset label and the reuse of the attribution on screen."""

from __future__ import annotations

import re

import pytest

from components import common
from components.common import (
    NOT_AN_IMAGE,
    OUTDATED_CLASS,
    ProgressEstimate,
    attribution_chart,
    duration_text,
    image_path_or_error,
    mark_outdated,
    one_status,
    outdated_html,
)
from grains.errors import InputError
from grains.viz.heatmap import COLLAPSE_MIN, display_tokens, render_token_heatmap, template_indices


def test_outdated_html_marks_once_and_keeps_the_content():
    marked = outdated_html("<b>old</b>", "the model changed")
    assert marked.count(f"class=\"{OUTDATED_CLASS}\"") == 1 and "<b>old</b>" in marked and "the model changed" in marked
    again = outdated_html(marked, "an example was loaded")
    assert again.count("grains-outdated-banner") == 1 and "an example was loaded" in again
    assert "the model changed" not in again and "<b>old</b>" in again
    assert outdated_html("", "x") == ""
    assert "&lt;script&gt;" in outdated_html("<i>x</i>", "<script>")


def test_mark_outdated_adds_and_removes_the_class():
    assert mark_outdated(True, ["a"])["elem_classes"] == ["a", OUTDATED_CLASS]
    assert mark_outdated(False, ["a", OUTDATED_CLASS])["elem_classes"] == ["a"]


def test_one_status_puts_progress_and_errors_on_one_component():
    marker = object()
    options = one_status(marker)
    assert options == {"show_progress": "full", "show_progress_on": [marker]}


def test_progress_estimate_measures_the_cost_per_step():
    now = [100.0]
    seen = []
    est = ProgressEstimate(lambda f, t: seen.append((f, t)), clock=lambda: now[0],
                           then={"example": "cross-validation"})
    est(0.0, "Starting")
    assert "left" not in seen[-1][1]  # nothing to extrapolate from yet
    now[0] = 140.0
    est(0.05, "example 1/6")  # the first example took 40 s: 5 more take 200 s, whatever share the phase has
    assert seen[-1] == (0.05, "example 1/6 · 40 s so far, about 3 min 20 s left for the example steps (40 s each, "
                              "measured)")
    assert est.first_eta == 200.0
    now[0] = 340.0
    est(0.3, "example 6/6")
    assert seen[-1][1] == "example 6/6 · 4 min 00 s so far, example done; now cross-validation…"
    now[0] = 400.0
    est(0.5, "fold 1 of 3")  # not a counted phase: extrapolated from the fraction
    assert seen[-1][1] == "fold 1 of 3 · 5 min 00 s so far, about 5 min 00 s left"
    now[0] = 430.0
    assert est.stopped_text() == "fold 1 of 3, after 5 min 30 s" and "left" not in est.stopped_text()
    est(1.5, "done")  # clamped
    assert seen[-1][0] == 1.0
    assert duration_text(59.4) == "59 s" and duration_text(3725) == "1 h 02 min"


def test_the_degenerate_warning_compares_with_the_unsteered_row():
    from components.views.compare import degenerate_note

    stuck = "the cat the cat the cat the cat the cat the cat the cat the cat"
    fluent = "A short walk in the park made the afternoon calm and bright for everyone there."
    assert "steering this hard breaks the text" in degenerate_note(stuck, unsteered=fluent)
    both = degenerate_note(stuck, unsteered=stuck)
    assert "unsteered row repeats too" in both and "steering this hard" not in both
    assert "steering is not the cause" in degenerate_note(stuck)  # the unsteered column itself
    assert degenerate_note(fluent, unsteered=stuck) == ""


def test_compare_measures_kl_on_the_vector_cards_prompt_set(tiny_llama):
    from components.actions.compare import neutral_kl, side_effect_line
    from grains.side_effects import load_neutral_prompts, measure_side_effects
    from grains.steering import Steering
    from tests.factories import random_vector

    steering = Steering.create(tiny_llama, random_vector(tiny_llama), layers=1, strength=1.0)
    card = measure_side_effects(tiny_llama, steering, generations=0)  # what the vector card reports
    meter = neutral_kl(tiny_llama)
    assert len(meter.prompts) == card.n_prompts == len(load_neutral_prompts()) > 24
    assert abs(meter.mean(steering) - card.kl_mean) < 1e-6
    assert f"{card.kl_mean:.3f} nats on {card.n_prompts} neutral prompts" in side_effect_line(tiny_llama, steering)


def test_a_text_file_named_jpg_is_refused_in_plain_words(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a picture at all")
    with pytest.raises(InputError) as caught:
        image_path_or_error(str(fake))
    assert str(caught.value) == NOT_AN_IMAGE
    assert str(tmp_path) not in str(caught.value)
    real = common.__file__.replace("components/common.py", "assets/images/coffee.jpg")
    assert image_path_or_error(real) == real
    assert image_path_or_error(None) is None


def test_safe_image_preprocess_gives_one_gradio_error(tmp_path):
    import gradio as gr
    from gradio.data_classes import ImageData

    with gr.Blocks():
        image = common.safe_image(label="Photo")
    fake = tmp_path / "photo.jpg"
    fake.write_text("not a picture")
    with pytest.raises(gr.Error) as caught:
        image.preprocess(ImageData(path=str(fake)))
    assert caught.value.message == NOT_AN_IMAGE
    assert image.get_block_name() == "image" and image.type == "filepath"
    assert image.preprocess(None) is None


def test_image_tokens_are_labelled_with_their_patch():
    tokens = ["<bos>", "<image>", "<image>", "<image>", "<image>", "Is", " it"]
    mask = [False, True, True, True, True, False, False]
    assert display_tokens(tokens, mask, grid_shape=[2, 2]) == ["<bos>", "img 0 r0c0", "img 1 r0c1", "img 2 r1c0",
                                                               "img 3 r1c1", "Is", "·it"]
    # an explicit layout: the third image token lies off the heatmap's view
    assert display_tokens(tokens, mask, cells=[3, 0, -1, 1], grid_shape=[2, 2])[1:5] == [
        "img 0 r1c1", "img 1 r0c0", "img 2 (other view)", "img 3 r0c1"]
    # no grid that fits: still numbered
    assert display_tokens(tokens, mask, grid_shape=[3, 3])[1:5] == ["img 0", "img 1", "img 2", "img 3"]
    with pytest.raises(InputError):
        display_tokens(tokens, mask[:-1])


class _Result:
    def __init__(self, tokens, content, image=None):
        self.tokens = tokens
        self.scores = [0.1 * (i + 1) for i in range(len(tokens))]
        self.content_mask = content
        self.image_mask = image or [False] * len(tokens)


def test_a_long_system_prompt_collapses_into_one_chip_and_leaves_the_colour_scale():
    system = ["<|im_start|>", "system", "\n", "You", " are", " Qwen", ",", " created", "<|im_end|>", "\n"]
    user = ["<|im_start|>", "user", "\n", "Hi", " there", "<|im_end|>"]
    tokens = system + user
    content = [False] * len(system) + [False, False, False, True, True, False]
    result = _Result(tokens, content)
    hidden = template_indices(result)
    assert hidden == [i for i, c in enumerate(content) if not c]
    assert template_indices(result, hide=False) == []
    scores = [50.0] * len(system) + [0, 0, 0, 1.0, -0.5, 0]
    html = render_token_heatmap(tokens, scores, hidden=hidden)
    assert html.count("grains-tok-collapsed") == 1  # the 13-token system run (the 3 user markers stay tokens)
    assert "… 13 template tokens (0–12) hidden" in html
    assert len(re.findall(r'class="grains-tok[ "]', html)) == len(tokens) - 13
    # the huge system scores no longer set the colour scale: the legend's end is the largest content score
    legend = html.split("grains-legend-labels")[1]
    assert "<span>+1</span>" in legend and "+50" not in legend
    assert COLLAPSE_MIN <= 13


def test_excluded_tokens_are_hatched_not_struck_through():
    html = render_token_heatmap(["Q", ":", " hi"], [0.1, 0.2, 0.3], excluded=[1])
    assert "line-through" not in html
    span = re.search(r'<span class="grains-tok grains-excluded"[^>]*>', html).group(0)
    assert "repeating-linear-gradient" in span and "dashed" in span


def test_attribution_chart_hides_template_bars_and_greys_excluded_ones():
    fig = attribution_chart(["<bos>", "a", ":", "b"], [5.0, 0.5, 0.2, -0.3], selected=[1], excluded=[2],
                            hidden=[0], labels=["<bos>", "a", ":", "img 0 r0c0"])
    bar = fig.data[0]
    assert list(bar.x) == ["1: a", "2: :", "3: img 0 r0c0"]  # real indices kept
    assert [row[0] for row in bar.customdata] == [1, 2, 3]
    assert bar.marker.color[1] == common.EXCLUDED_BAR and bar.marker.color[0] != common.EXCLUDED_BAR
    assert list(bar.marker.pattern.shape) == ["", "/", ""]
    assert list(bar.marker.line.width) == [2.5, 0, 0]  # the selected token (index 1) keeps its outline
    assert "1 template tokens hidden" in fig.layout.annotations[0].text


def test_vector_file_names_describe_the_vector():
    from components.actions.steering import build_concept, vector_file_name

    class V:
        method, default_layer = "caa", 11

    assert vector_file_name(V(), "gemma-3-270m", "sentiment") == "grains_gemma-3-270m_sentiment_caa_L11.safetensors"
    assert vector_file_name(V(), "meta-llama/Llama-3.1-8B", "my data!") == (
        "grains_Llama-3.1-8B_my-data_caa_L11.safetensors")
    assert build_concept("dataset", "uploaded file", "/tmp/x/animals.jsonl") == "animals"
    assert build_concept("dataset", "truthfulqa", None) == "truthfulqa"
    assert build_concept("example", None, None) == "example"


def test_strength_zero_is_a_plain_warn_note_never_green():
    from components.views.steering import build_note

    still = build_note({"n_examples": 6, "seconds": 12, "strength": 0.0, "note": "no cell beat unsteered"}, True)
    assert "grains-note-warn" in still and "grains-note-ok" not in still
    assert "The model did not move: strength 0 suggested" in still
    moved = build_note({"n_examples": 6, "seconds": 12, "strength": 0.5, "reused_attribution": True}, True)
    assert "grains-note-ok" in moved and "reused the attribution on screen" in moved
    phases = {"attribution": 9.6, "cross-validation": 44.2, "ablation": 2.1, "budget": 0.01}
    timed = build_note({"n_examples": 16, "seconds": 61, "strength": 0.5, "timings": phases}, True)
    assert "(cross-validation 44 s · attribution 10 s · ablation 2 s)" in timed  # largest first; tiny ones left out


def test_the_qwen_preset_says_it_is_qwen_coder():
    from components.model_panel import preset_label, preset_model_name

    assert preset_model_name("qwen2.5-0.5b-instruct") == "Qwen2.5-Coder-0.5B-Instruct"
    assert "Qwen2.5-Coder-0.5B-Instruct" in preset_label("qwen2.5-0.5b-instruct")
    assert "Coder" not in preset_label("tiny-random-qwen2")


def test_the_build_status_says_the_model_changed():
    from components.session import Session
    from components.views.steering import status_after_refresh

    session = Session(model_name="tiny-random-qwen2")
    assert status_after_refresh(session) == ""
    session.last_build = {"model": "tiny-random-llama"}
    note = status_after_refresh(session)
    assert "tiny-random-llama" in note and "tiny-random-qwen2" in note and "Built" not in note


def test_build_from_the_current_example_reuses_the_attribution_on_screen(monkeypatch):
    import grains
    import grains.build as build
    from components.actions.steering import reusable_attribution
    from components.session import Session

    lm = grains.load_model("tiny-random-llama")
    prompt, chosen, rejected = "Q: Is the sky blue?\nA:", " Yes", " No"
    shown = grains.attribute(lm, prompt, chosen, rejected, steps=4)
    calls = []
    real = build.attribute_example
    monkeypatch.setattr(build, "attribute_example", lambda *a, **k: calls.append(1) or real(*a, **k))
    ex = grains.PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected)
    reused = build.build_vector(lm, [ex], k=2, steps=4, select=False, report_side_effects=False,
                               attributions=[shown])
    assert calls == []
    fresh = build.build_vector(lm, [ex], k=2, steps=4, select=False, report_side_effects=False)
    assert calls == [1]
    # same example, same settings: IG on the same rule gives the same top-k, so the same vector
    layer = reused.vector.default_layer
    assert reused.vector.directions[layer].shape == fresh.vector.directions[layer].shape
    other = grains.attribute(lm, "Q: Is grass green?\nA:", chosen, rejected, steps=4)  # a different example
    build.build_vector(lm, [ex], k=2, steps=4, select=False, report_side_effects=False, attributions=[other])
    assert calls == [1, 1]  # token counts differ: attributed again

    session = Session(model_name="tiny-random-llama", attribution=shown,
                      inputs={"steps": 4, "target": "sequence", "baseline": "zero"})
    assert reusable_attribution(session, 4, "sequence") is shown
    assert reusable_attribution(session, 8, "sequence") is None
    assert reusable_attribution(session, 4, "last") is None


def test_a_new_photo_marks_the_last_check_outdated():
    from components.views.hallucination import stale_updates

    data = {"inputs": {"image": "/a.jpg"}, "unsteered": {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                          "yes_ratio": 0.5, "hallucinations": 0, "absent": 1, "tp": 1,
                                                          "fn": 0},
            "model": "m", "n": 2, "question_template": "Is there a {object}?", "image": {"name": "a.jpg"}}
    summary, table = stale_updates(data, "/b.jpg")
    assert "Outdated: the photo changed" in summary and "accuracy" in summary
    assert table["elem_classes"] == [OUTDATED_CLASS]
    assert stale_updates(data, "/a.jpg") == [{"__type__": "update"}, {"__type__": "update"}]
    assert stale_updates(None, "/b.jpg") == [{"__type__": "update"}, {"__type__": "update"}]


def test_the_model_card_shows_what_loading_chose_about_arithmetic(tiny_llama):
    from dataclasses import replace

    from components.model_panel import model_card

    note = "fp32 products go through oneDNN's fast route (checked on this model's output head: ...)."
    assert "oneDNN" not in model_card(tiny_llama)
    assert "fp32 products go through oneDNN&#x27;s fast route" in model_card(replace(tiny_llama, notes=[note]))


def test_the_vector_card_says_whether_the_builds_attributions_converged(tiny_llama):
    from components.common import esc
    from components.session import Session
    from components.views.steering import vector_card
    from grains.build import build_vector
    from grains.data import PreferenceExample

    pairs = [PreferenceExample("Is fire hot?", "Yes.", "No."), PreferenceExample("Is ice hot?", "No.", "Yes.")]
    session = Session(model_name="tiny-random-llama")
    session.vector = build_vector(tiny_llama, pairs, method="grains", k=1, steps=4, select=False,
                                  report_side_effects=False).vector
    reading = session.vector.meta["attribution_convergence"]["reading"]
    assert reading.startswith("IG converged on ") and "of 2 examples" in reading
    assert "Attributions (for top-k):" in vector_card(session) and esc(reading) in vector_card(session)
    session.vector = build_vector(tiny_llama, pairs, method="caa", select=False, report_side_effects=False).vector
    assert "Attributions (for top-k)" not in vector_card(session)
