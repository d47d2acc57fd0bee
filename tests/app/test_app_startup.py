"""How the app starts: a preloaded app opens filled in (its first state baked into the layout, no refresh on load),
and its idle queue polls calmly instead of every millisecond."""

from __future__ import annotations

import copy

import gradio as gr
import pytest

from components.initial_values import bake_initial_values


def test_values_and_properties_are_applied_as_a_runtime_update_would():
    with gr.Blocks():
        slider = gr.Slider(0, 17, value=9, step=1, label="Layer")
        card = gr.HTML()
        menu = gr.Dropdown(["raw", "chat"], value="raw")
        column = gr.Column(visible=True)
        state = gr.State({"n": 1})
        untouched = gr.Textbox(value="keep")
    bake_initial_values([slider, card, menu, column, state, untouched], [
        gr.update(maximum=3, value=2), "<b>model</b>", gr.update(choices=["chat"], value="chat"),
        gr.update(visible=False), {"n": 2}, gr.skip()])
    assert (slider.maximum, slider.value, slider.minimum, slider.label) == (3, 2, 0, "Layer")
    assert slider.constructor_args["maximum"] == 3  # later run-time updates start from the baked state
    assert card.value == "<b>model</b>"
    assert menu.choices == [("chat", "chat")] and menu.value == "chat"
    assert column.visible is False
    assert state.value == {"n": 2}
    assert untouched.value == "keep"
    config = slider.get_config()
    assert config["maximum"] == 3 and config["value"] == 2


def test_a_length_mismatch_is_an_error():
    with gr.Blocks():
        box = gr.Textbox()
    with pytest.raises(ValueError, match="2 updates for 1 blocks"):
        bake_initial_values([box], ["a", "b"])


def test_a_preloaded_app_opens_in_the_state_its_refresh_would_set():
    """No load event remains, and each output's configured value is what the refresh computes for a new session."""
    import app

    demo = app.build_app("tiny-random-llama", preload=True)
    on_load = [fn for fn in demo.fns.values() if any(target[1] == "load" for target in fn.targets)]
    # only the model card is refreshed on load (which other models are loaded changes while the app runs), besides
    # the session restore (components.session_store), which changes nothing on a new browser's page
    assert sorted(fn.name for fn in on_load if fn.fn is not None) == ["current_card", "restore"]
    # and one that runs only in the browser: the page takes no click until the restore has landed
    assert [bool(fn.js) for fn in on_load if fn.fn is None] == [True]
    assert [block.elem_id for block in next(fn for fn in on_load if fn.name == "current_card").outputs] == [
        "grains-model-card"]
    refresh = next(fn for fn in demo.fns.values() if fn.name == "refresh_all")
    session = copy.deepcopy(refresh.inputs[0].value)
    for block, update in zip(refresh.outputs, refresh.fn(session)):
        wanted = update if not isinstance(update, dict) else update.get("value", getattr(block, "value", None))
        if isinstance(block, (gr.HTML, gr.Textbox, gr.Dropdown, gr.Slider)):
            assert block.value == wanted, block.elem_id
    card = next(block for block in refresh.outputs if getattr(block, "elem_id", None) == "grains-model-card")
    assert "tiny-random-llama" in card.value
    layer = next(block for block in refresh.outputs if getattr(block, "elem_id", None) == "grains-layer")
    assert layer.maximum == 3  # the tiny Llama's 4 layers, not the layout's placeholder


def test_an_app_without_a_preloaded_model_refreshes_on_load_and_polls_calmly():
    import app

    demo = app.build_app("tiny-random-llama", preload=False)
    assert [fn for fn in demo.fns.values() if any(target[1] == "load" for target in fn.targets)]
    assert demo._queue.sleep_when_free == demo._queue.progress_update_sleep_when_free == app.QUEUE_POLL_SECONDS


def test_the_queue_polls_every_50_ms_not_every_millisecond():
    import app

    with gr.Blocks() as demo:
        gr.Textbox()
    demo.queue()
    assert demo._queue.sleep_when_free == 0.001  # Gradio's own: about a tenth of a core while idle
    app.calm_idle_queue(demo)
    assert demo._queue.sleep_when_free == demo._queue.progress_update_sleep_when_free == app.QUEUE_POLL_SECONDS
    app.calm_idle_queue(demo, seconds=0.0001)  # never below what is set
    assert demo._queue.sleep_when_free == app.QUEUE_POLL_SECONDS
    with gr.Blocks() as unqueued:
        gr.Textbox()
    app.calm_idle_queue(unqueued)  # a Blocks without a queue (or a Gradio without the fields) is left alone


def test_each_page_load_shows_the_models_loaded_since_the_app_started():
    import app
    from components.model_cache import MODELS

    demo = app.build_app("tiny-random-llama", preload=True)
    on_load = next(fn for fn in demo.fns.values() if any(target[1] == "load" for target in fn.targets))
    MODELS.get("tiny-random-llava")  # another user loads a model after the page was built
    card = on_load.fn(copy.deepcopy(on_load.inputs[0].value))
    assert "tiny-random-llama" in card and "Also loaded" in card and "tiny-random-llava" in card
