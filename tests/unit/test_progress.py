"""The stderr progress bar: bar, percentage, ETA; in place on a terminal, rate-limited lines elsewhere."""

import io

from grains.progress import ProgressBar, format_seconds


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_format_seconds():
    assert format_seconds(5.4) == "5s"
    assert format_seconds(125) == "2m05s"
    assert format_seconds(3725) == "1h02m"


def test_eta_from_elapsed_and_fraction():
    clock = Clock()
    bar = ProgressBar(io.StringIO(), clock=clock)
    clock.now += 30
    line = bar.line(0.25, "example 1/4")
    assert "25%" in line and "example 1/4" in line and "30s elapsed" in line and "ETA 1m30s" in line
    assert line.count("#") == 6  # a quarter of the 24-wide bar


def test_pipe_gets_rate_limited_lines_and_the_last_one():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar(out, interval=10, clock=clock)
    bar(0.1, "a")
    clock.now += 2
    bar(0.2, "b")  # within the interval: skipped
    clock.now += 10
    bar(0.5, "c")
    bar(1.0, "done")  # the end is always written
    lines = out.getvalue().splitlines()
    assert [line.split("] ")[1].split(" ·")[0].split()[-1] for line in lines] == ["a", "c", "done"]
    assert lines[-1].endswith("ETA 0s")


def test_build_progress_reaches_stderr_with_json(tmp_path, capsys):
    from grains.cli import main

    out = tmp_path / "v.safetensors"
    code = main(["build", "--model", "tiny-random-llama", "--data", "truthfulqa", "--limit", "2", "--steps", "4",
                 "--no-select", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and out.exists()
    assert "example 2/2" in captured.err and "ETA" in captured.err and "100%" in captured.err
    assert captured.out.strip().startswith("{")
