"""components.inputs: the parsing and argument checks behind the panels and the API (edge cases)."""

from __future__ import annotations

import math

import pytest

from components.inputs import (
    chosen_format,
    cycle_override,
    dataset_name,
    first_row,
    parse_indices,
    parse_numbers,
    parse_overrides,
    parse_stop,
    settings_from,
    tolerance_value,
    whole,
)
from components.session import Session, no_overrides
from grains.errors import GrainsError, InputError
from grains.generation import QA_STOP


def test_whole_accepts_integral_floats_and_text_and_refuses_fractions():
    assert whole(3, "x") == 3 and whole(2.0, "x") == 2 and whole("7", "x") == 7 and whole("-1", "x") == -1
    with pytest.raises(InputError, match="whole number, not 2.5"):
        whole(2.5, "IG steps")
    for bad in (None, "two", ""):
        with pytest.raises(InputError, match="IG steps must be a whole number"):
            whole(bad, "IG steps")


def test_first_row_clamps_and_falls_back_to_zero():
    assert first_row(12) == 12 and first_row("3.9") == 3 and first_row(None) == 0
    assert first_row(-5) == 0 and first_row("abc") == 0


def test_tolerance_is_a_percentage_and_zero_turns_it_off():
    assert tolerance_value(0) is None
    assert math.isclose(tolerance_value(5), 0.05) and math.isclose(tolerance_value("12.5"), 0.125)
    for bad in (100, -1, "x"):
        with pytest.raises(InputError):
            tolerance_value(bad)


def test_parse_indices_sorts_dedups_and_checks_the_range():
    assert parse_indices("4, 1 4,,7", "drop") == [1, 4, 7]
    assert parse_indices("", "drop") == [] and parse_indices(None, "drop") == []
    assert parse_indices("0 9", "drop", limit=10) == [0, 9]
    with pytest.raises(InputError, match=r"token index 10 is out of range \(0 to 9\)"):
        parse_indices("10", "drop", limit=10)
    with pytest.raises(InputError, match=r"-1 is out of range \(0 or more\)"):
        parse_indices("-1", "drop")
    with pytest.raises(InputError, match="'1.5' is not a token index"):
        parse_indices("1.5", "drop")


def test_parse_numbers_keeps_order_and_refuses_non_finite_or_empty():
    assert parse_numbers("0.5, -1 0", "Strengths") == [0.5, -1.0, 0.0]
    assert parse_numbers("3 6", "Layers", whole=True) == [3.0, 6.0]
    with pytest.raises(InputError, match="'2.5' is not a whole number"):
        parse_numbers("2.5", "Layers", whole=True)
    for text, message in (("nan", "not a finite number"), ("inf", "not a finite number"), ("x", "not a number"),
                          ("", "give at least one number"), (" , ", "give at least one number")):
        with pytest.raises(InputError, match=message):
            parse_numbers(text, "Strengths")


def test_cycle_override_goes_round_and_keeps_the_other_tokens():
    ov = no_overrides()
    ov["drop"] = [2]
    states = [cycle_override(ov, 5) for _ in range(4)]
    assert states == ["force_positive", "force_negative", "drop", "auto"]
    assert ov == {"force_positive": [], "force_negative": [], "drop": [2]}
    cycle_override(ov, 2)  # dropped -> automatic
    assert ov["drop"] == []


def test_parse_overrides_refuses_an_index_in_two_lists_unless_allowed():
    out = parse_overrides("1, 3", "2", "", 5)
    assert out == {"force_positive": [1, 3], "force_negative": [2], "drop": []}
    with pytest.raises(InputError, match="Token 3 is in two override lists"):
        parse_overrides("3", "4", "3", 5)
    assert parse_overrides("3", "3", "", 5, disjoint=False)["force_negative"] == [3]
    with pytest.raises(InputError, match="Never pick: token index 5 is out of range"):
        parse_overrides("", "", "5", 5, ("Force positive", "Force negative", "Never pick"))


def test_parse_stop_turns_backslash_n_into_a_line_break_and_dedups():
    assert parse_stop(True, "") == (QA_STOP,)
    assert parse_stop(False, "\\nUser:\n\n  \nEND\nEND") == ("\nUser:", "END")
    assert parse_stop(True, "\\nQ:") == (QA_STOP,)  # the same as the Q: turn, once


def test_settings_from_checks_the_generation_settings():
    settings = settings_from(12, True, None, "0.9", "4", ("END",))
    assert (settings.max_new_tokens, settings.do_sample, settings.temperature, settings.top_p, settings.seed,
            settings.stop) == (12, True, 1.0, 0.9, 4, ("END",))
    with pytest.raises(InputError):
        settings_from(1.5, False, 1, 1, 0)
    with pytest.raises(GrainsError):
        settings_from(0, False, 1, 1, 0)


def test_format_and_dataset_defaults():
    assert chosen_format("") is None and chosen_format(None) is None and chosen_format(" qa ") == "qa"
    assert dataset_name("pope_style", None) == "pope_style" and dataset_name("", None) == "truthfulqa"
    assert dataset_name("", "/tmp/x.jsonl") != "truthfulqa"


def test_steering_checks_need_a_vector_and_an_attribution():
    from components.inputs import require_attribution, session_steering

    session = Session(model_name="tiny-random-llama")
    with pytest.raises(InputError, match="no steering vector"):
        session_steering(session, None, 1, 0.5)  # the vector is checked before the model is touched
    with pytest.raises(InputError, match="Run it first"):
        require_attribution(session, "Run it first")
