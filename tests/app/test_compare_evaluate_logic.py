"""Compare and Evaluate logic: stop sequences (both rows, identity at 0), the degenerate flag, an interval that
agrees with the McNemar test, the margin/accuracy note, per-item row numbers, evaluation stop between rows, Show
code fidelity."""

from __future__ import annotations

import pytest

from components.actions.compare import change_summary
from components.actions.evaluate import EtaProgress, items_table
from components.inputs import parse_stop
from components.session import Session
from components.show_code import cli_code, python_code
from components.views.compare import outdated_html, sweep_table_html
from components.views.evaluate import items_html, result_html, sweep_note
from grains.errors import Cancelled, InputError
from grains.evaluation import evaluate, margin_accuracy_note
from grains.fluency import degeneracy
from grains.generation import QA_STOP, GenerationSettings, cut_at_stop, generate_pair, stream_pair
from grains.stats import mcnemar_exact, mcnemar_interval, significance_summary
from grains.steering import active_hook_count
from tests.factories import random_vector

PROMPT = "What is the capital of France?"


# ---------------------------------------------------------------- Stop of a side-by-side run


class _Steps:
    """A stand-in for TextStream: `n` steps, calling `during(i)` while step i is being computed."""

    def __init__(self, n: int, during=lambda i: None):
        self.n, self.during, self.stopped, self.closed = n, during, False, False

    def __iter__(self):
        try:
            for i in range(1, self.n + 1):
                self.during(i)
                yield f"u{i}", f"s{i}"
        finally:
            self.closed = True


def test_stop_while_a_step_is_computed_ends_the_run_at_that_step_and_leaves_no_count():
    from components.actions.compare import GENERATING, counted_steps, job_key, take_generating_count

    session = Session(model_name="tiny-random-llama")
    taken = []
    stream = _Steps(10, during=lambda i: taken.append(take_generating_count(session)) if i == 4 else None)
    seen = [count for count, _, _ in counted_steps(session, stream)]
    assert seen == [1, 2, 3] and taken == [3]  # Stop took the count of the steps on screen; step 4 never showed
    assert stream.stopped and stream.closed  # the caller ends with "Stopped after 3", the worker is closed
    assert job_key(session) not in GENERATING  # no step re-counted the run after Stop took it
    assert take_generating_count(session) is None  # a second Stop finds nothing running


def test_stop_after_the_run_finished_changes_nothing():
    from components.actions.compare import counted_steps, take_generating_count

    session = Session(model_name="tiny-random-llama")
    stream = _Steps(3)
    assert [count for count, _, _ in counted_steps(session, stream)] == [1, 2, 3]
    assert not stream.stopped and take_generating_count(session) is None


# ---------------------------------------------------------------- stop sequences


def test_cut_at_stop_takes_the_earliest_sequence():
    assert cut_at_stop(" Paris.\nQ: next?\nA: x", (QA_STOP, "A:")) == (" Paris.", QA_STOP)
    assert cut_at_stop(" Paris.", (QA_STOP,)) == (" Paris.", None)


def test_stop_sequence_stops_both_rows_at_the_same_string(lm):
    vector = random_vector(lm)
    free = generate_pair(lm, PROMPT, vector, layer=1, strength=0.0, settings=GenerationSettings(max_new_tokens=16))
    assert len(free.unsteered) > 8
    stop = free.unsteered[4:7]  # a string the free continuation contains
    expected = free.unsteered[:free.unsteered.find(stop)]
    pair = generate_pair(lm, PROMPT, vector, layer=1, strength=0.0,
                         settings=GenerationSettings(max_new_tokens=16, stop=(stop,)))
    assert pair.unsteered == pair.steered == expected  # identity at strength 0 still holds, cut at the same place
    assert pair.stopped_unsteered == pair.stopped_steered == stop
    streamed = list(stream_pair(lm, PROMPT, vector, layer=1, strength=0.0,
                                settings=GenerationSettings(max_new_tokens=16, stop=(stop,))))[-1]
    assert streamed == (expected, expected)
    steered = generate_pair(lm, PROMPT, vector, layer=1, strength=2.0,
                            settings=GenerationSettings(max_new_tokens=16, stop=(stop,)))
    assert steered.unsteered == expected and stop not in steered.steered  # the same check on the steered row
    assert active_hook_count(lm) == 0


def test_stop_sequences_are_checked():
    for bad in (("",), ("x" * 101,), tuple("abcdefghi")):
        with pytest.raises(InputError):
            GenerationSettings(stop=bad).check()


def test_parse_stop_default_and_custom_lines():
    assert parse_stop(True, "") == (QA_STOP,)
    assert parse_stop(False, "User:\n\\nHuman:\n\n") == ("User:", "\nHuman:")


# ---------------------------------------------------------------- degenerate flag and the sweep table


def test_degenerate_flag_on_repeats_not_on_a_sentence():
    assert degeneracy(" ".join(["water"] * 40))
    assert degeneracy("The. ........")
    assert degeneracy("I think so. I think so. I think so. I think so.")
    assert degeneracy(" " + "P" * 40) and degeneracy("8" * 30)  # one long run is one "word"
    assert degeneracy("The seeds pass through your digestive system and are excreted intact.") is None
    assert degeneracy("The seeds pass through your digestive system and come out the other end.") is None
    assert degeneracy("Yes.") is None  # too short to judge


def test_sweep_table_marks_degenerate_rows_and_keeps_headers_whole():
    rows = [[0.0, "The cat sat.", "unsteered", 0.0],
            [1.0, " ".join(["cat"] * 30), "differs from unsteered after 0 shared words (95% different); DEGENERATE "
             "(distinct-2 0.03: the same word pairs over and over)", 0.8]]
    html = sweep_table_html(rows)
    assert html.count("grains-degenerate") == 1 and "white-space:nowrap" in html and "table-layout:fixed" in html
    assert "overflow-wrap:anywhere" in html  # long runs without spaces wrap inside their cell
    assert change_summary("a b c", "a b c") == "same as unsteered"
    assert change_summary("a b x y", "a b c d").startswith("differs from unsteered after 2 shared words")


def test_outdated_mark_is_idempotent_and_skips_placeholders():
    marked = outdated_html("<p>old</p>", "the prompt")
    assert "Outdated" in marked and "the prompt" in marked and "<p>old</p>" in marked
    assert isinstance(outdated_html(marked, "x"), dict)  # gr.update(): already marked
    assert isinstance(outdated_html('<div class="grains-placeholder">Press</div>'), dict)


# ---------------------------------------------------------------- interval and test agree


def _paired(b: int, c: int, same: int) -> tuple[list[bool], list[bool]]:
    return [True] * b + [False] * c + [True] * same, [False] * b + [True] * c + [True] * same


def test_interval_excludes_zero_exactly_when_mcnemar_rejects():
    checked = 0
    for n in (5, 12, 20, 40):
        for b in range(n + 1):
            for c in range(n + 1 - b):
                u, s = _paired(b, c, n - b - c)
                low, high = mcnemar_interval(u, s)
                assert (low > 0 or high < 0) == (mcnemar_exact(u, s) < 0.05), (n, b, c)
                assert low <= (c - b) / n <= high
                checked += 1
    assert checked > 500


def test_the_issue_case_no_longer_contradicts_itself():
    u, s = _paired(1, 7, 12)  # +30 points on 20 items, p = 0.07
    boot = significance_summary(u, s)
    exact = significance_summary(u, s, "mcnemar")
    assert boot["gain_ci"][0] > 0 and boot["p_value"] > 0.05  # the old reading: interval and test disagree
    assert exact["gain_ci"][0] < 0 < exact["gain_ci"][1] and exact["p_value"] == boot["p_value"]
    assert "could be chance" in exact["reading"] and "McNemar" in exact["gain_ci_method"]


def test_margin_note_explains_opposite_moves():
    unsteered = [{"correct": False, "margin": -0.1}, {"correct": True, "margin": 1.0},
                 {"correct": False, "margin": -5.0}]
    steered = [{"correct": True, "margin": 0.1}, {"correct": True, "margin": 1.0}, {"correct": False, "margin": -9.0}]
    note = margin_accuracy_note(unsteered, steered)
    assert note and note.startswith("Accuracy rose while the mean margin fell") and "1 item(s) crossed" in note
    assert margin_accuracy_note(unsteered, unsteered) is None


# ---------------------------------------------------------------- evaluation: row numbers, stop, reading


@pytest.fixture(scope="module")
def pairs():
    from grains.data import BUILTIN_DATASETS, load_any

    kind, rows = load_any(BUILTIN_DATASETS["hallucination_pairs"], limit=4, offset=30)
    return kind, rows


def test_items_are_numbered_by_dataset_row_and_show_answers(lm, pairs):
    kind, rows = pairs
    result = evaluate(lm, rows, kind, random_vector(lm), layer=1, strength=1.0, per_item=True, first_row=30).to_dict()
    assert [i["row"] for i in result["items"]] == [30, 31, 32, 33]
    assert [r[0] for r in items_table(result)] == [30, 31, 32, 33]
    html = items_html(result)
    assert ">30</td>" in html and ">33</td>" in html and ">0</td>" not in html
    assert all(str(i["answer"])[:10] in html for i in result["items"])  # the answers are in the table
    assert result["gain_ci"] is None and "too few items to test" in result["reading"]  # 4 rows: no test, no CI
    page = result_html({**result, "dataset": "hallucination_pairs rows 30-33"})
    assert "too few items to test" in page and "inverts that same test" not in page


def test_evaluation_stops_between_rows_and_leaves_no_hook(lm, pairs):
    kind, rows = pairs
    polls = []
    evaluate(lm, rows, kind, None, should_stop=lambda: polls.append(1) and False)  # the unsteered phase's polls
    unsteered_polls = len(polls)
    assert unsteered_polls >= 1
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > unsteered_polls  # the whole unsteered phase, then stop at the first steered poll

    with pytest.raises(Cancelled, match="Stopped by the user"):
        evaluate(lm, rows, kind, random_vector(lm), layer=1, strength=1.0, should_stop=should_stop)
    assert len(calls) == unsteered_polls + 1
    assert active_hook_count(lm) == 0


def test_eta_progress_estimates_from_the_mean_row_time():
    now = [0.0]
    seen = []
    meter = EtaProgress(lambda f, desc: seen.append((f, desc)), clock=lambda: now[0])
    now[0] = 10.0
    meter(0.25, "unsteered 5/20")
    assert seen[-1] == (0.25, "unsteered 5/20 · 10 s so far, about 30 s left for the unsteered steps (2 s each, "
                              "measured)") and meter.first_eta == 30.0
    now[0] = 50.0
    meter(0.6, "steered 20/20")  # the last row: say what runs now instead of a stale time left
    assert seen[-1][1] == ("steered 20/20 · 50 s so far, steered done; now the side effects on neutral prompts "
                           "(KL, then greedy continuations)…") and meter.first_eta == 30.0


def test_sweep_note_says_no_cell_moved():
    result = {"layers": [1, 2], "strengths": [0.5, 1.0], "values": [[0.0, 0.0], [0.0, 0.0]], "n": 8,
              "accuracy_unsteered": 0.5, "significant": [[False, False], [False, False]], "dataset": "x",
              "cells_tested": 4}
    assert "No cell moved" in sweep_note(result)
    result["values"][1][1] = 0.125
    assert "No cell moved" not in sweep_note(result)


# ---------------------------------------------------------------- Show code fidelity


def test_show_code_loads_the_loaded_file_and_uses_the_real_rows():
    session = Session(model_name="tiny-random-llama")
    session.vector, session.vector_label = object(), "loaded from my_truthful.safetensors"
    session.last_build = {"source": "dataset", "dataset": "truthfulqa", "rows": 6}  # built earlier, then replaced
    session.last_eval = {"dataset": "hallucination_pairs", "rows": 7, "offset": 150, "steered": True, "layer": 2,
                         "strength": 0.75, "normalize": True, "length_normalize": True, "prompt_format": "qa"}
    session.last_generation = {"prompt": "Q: Why?\nA:", "max_new_tokens": 30, "stop": [QA_STOP], "seed": 3,
                               "prompt_format": "raw"}
    cfg = {"layer": 2, "strength": 0.75, "normalize": True, "eval_rows": 20, "eval_offset": 24,
           "build_dataset": "truthfulqa", "build_rows": 6}
    code = python_code(cfg, session)
    assert "grains.load_vector(HERE / 'my_truthful.safetensors')" in code and "build_vector" not in code
    assert "limit=7, offset=150" in code and "limit=20" not in code
    assert "length_normalize=True" in code and "prompt_format='qa'" in code and "first_row=150" in code
    assert "stop=('\\nQ:',)" in code and "seed=3" in code
    assert "layers=2, strength=0.75, normalize=True" in code
    shell = cli_code(cfg, session)
    assert "python -m grains build" not in shell and "--vector my_truthful.safetensors" in shell
    assert "--limit 7" in shell and "--offset 150" in shell and "--stop '\\nQ:'" in shell
    shipped = Session(model_name="gemma-3-270m")
    shipped.vector, shipped.vector_label = object(), "shipped default (TruthfulQA)"
    shipped.vector_path = "/anywhere/assets/default_vector.safetensors"  # saved beside the script by the bundle
    assert "grains.load_vector(HERE / 'default_vector.safetensors')" in python_code(cfg, shipped)


def test_all_zero_heatmap_says_no_cell_moved():
    from components.charts import sweep_heatmap

    fig = sweep_heatmap([1, 2], [0.5, 1.0], [[0.0, 0.0], [0.0, 0.0]], significant=[[False, False], [False, False]],
                        value_label="gain (points)")
    assert [a.text for a in fig.layout.annotations] == ["no cell moved: gain (points) +0 in all 4 cells"]
    assert [list(row) for row in fig.data[0].text] == [["+0", "+0"], ["+0", "+0"]]  # every cell prints its value
    moved = sweep_heatmap([1, 2], [0.5, 1.0], [[0.0, 5.0], [0.0, 0.0]], value_label="gain (points)")
    assert not moved.layout.annotations


# ---------------------------------------------------------------- the same through the API (gradio_client)


def test_api_stop_sweep_column_and_row_numbers(app_server, lm, tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file

    path = tmp_path / "v.safetensors"
    random_vector(lm, layer=1, strength=1.0).save(path)
    c = Client(app_server("tiny-random-llama"), verbose=False)
    c.predict(handle_file(str(path)), False, api_name="/load_vector")
    free, same = c.predict(PROMPT, 1, 0.0, 16, None, api_name="/generate")
    assert free == same and len(free) > 8
    stop = free[4:7]
    cut, cut_steered = c.predict(PROMPT, 1, 0.0, 16, None, False, 1.0, 1.0, 0, True, "", stop, api_name="/generate")
    assert cut == cut_steered == free[:free.find(stop)]  # both rows stop at the same string; identity at 0 holds
    rows = c.predict(PROMPT, 1, "0, 4", 8, None, True, "", "", api_name="/strength_sweep")
    assert rows[0][2] == "unsteered"
    assert rows[1][2] == "same as unsteered" or rows[1][2].startswith("differs from unsteered")
    result, _ = c.predict("hallucination_pairs", None, 3, 120, True, 1, 1.0, api_name="/evaluate")
    assert [item["row"] for item in result["items"]] == [120, 121, 122]
    assert result["gain_ci"] is None and "too few items to test" in result["reading"]  # 3 rows: no test
