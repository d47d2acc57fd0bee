"""A progress bar with an ETA on stderr for long CLI work (`build`), independent of the --json output on stdout."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24


def format_seconds(seconds: float) -> str:
    """`1h02m`, `3m05s` or `12s`."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressBar:
    """Callable as `progress(fraction, message)` (the signature build_vector takes).

    On a terminal the bar redraws in place; elsewhere (a log file, a pipe) it writes a line at most every
    `interval` seconds and at the end, so a long build is never silent and never floods.

    Args:
        stream: where to write (default sys.stderr).
        interval: seconds between lines when the stream is not a terminal.
        clock: time source (for tests).
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last_line = -float("inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, fraction: float, message: str) -> str:
        """The text of one update: bar, percentage, message, elapsed time and ETA."""
        fraction = min(1.0, max(0.0, float(fraction)))
        elapsed = self.clock() - self.start
        filled = int(round(fraction * WIDTH))
        eta = format_seconds(elapsed * (1 - fraction) / fraction) if fraction > 0 else "?"
        return (f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} {message} · "
                f"{format_seconds(elapsed)} elapsed, ETA {eta if fraction < 1 else '0s'}")

    def __call__(self, fraction: float, message: str) -> None:
        text = self.line(fraction, message)
        now = self.clock()
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if fraction >= 1 else ""))
        elif fraction >= 1 or now - self.last_line >= self.interval:
            self.stream.write(text + "\n")
            self.last_line = now
        else:
            return
        self.stream.flush()
