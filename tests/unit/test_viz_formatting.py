"""grains.viz.formatting: the one percentage formatter behind every report, card and note."""

from grains.viz.formatting import percent


def test_percent_rounds_to_the_asked_digits_and_names_missing_values():
    assert percent(0.254) == "25%" and percent(0.254, 1) == "25.4%" and percent("0.5") == "50%"
    assert percent(-0.031, 1) == "-3.1%" and percent(1) == "100%"
    assert percent(None) == "n/a" and percent("abc") == "n/a" and percent(None, 1, "—") == "—"
