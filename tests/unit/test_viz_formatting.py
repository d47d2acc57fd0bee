"""grains.viz.formatting: the one percentage formatter behind every report, card and note."""

from grains.viz.formatting import percent, phase_times


def test_percent_rounds_to_the_asked_digits_and_names_missing_values():
    assert percent(0.254) == "25%" and percent(0.254, 1) == "25.4%" and percent("0.5") == "50%"
    assert percent(-0.031, 1) == "-3.1%" and percent(1) == "100%"
    assert percent(None) == "n/a" and percent("abc") == "n/a" and percent(None, 1, "—") == "—"


def test_phase_times_lists_the_largest_first_and_leaves_out_tiny_ones():
    timings = {"attribution": 9.6, "cross-validation": 44.2, "ablation": 2.1, "budget": 0.01}
    assert phase_times(timings, floor=0.05) == "cross-validation 44 s · attribution 10 s · ablation 2 s"
    assert phase_times(timings, digits=1, sep=", ").startswith("cross-validation 44.2 s, attribution 9.6 s")
    assert phase_times({}) == ""
