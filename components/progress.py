"""Progress with an estimate of the time left: a library's (fraction, message) callback turned into a message with
the time spent and the time left, measured per step for a counted phase ("example 2/6"), for gr.Progress or any sink."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def duration_text(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min' (rounded for reading, not for timing)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min"


STEP_MESSAGE = re.compile(r"^(?P<phase>[A-Za-z][\w ]*?)\s*(?P<done>\d+)/(?P<total>\d+)$")


class ProgressEstimate:
    """Turns a library's progress callback (fraction, message) into a message with the time spent and an estimate
    of the time left, for gr.Progress or any other sink.

    A message that counts steps ("example 2/6", "steered 5/20") is estimated from the MEASURED cost of its own steps:
    the time since its phase began over the steps done, times the steps left ("about 3 min left for the examples,
    40 s each"), and says what follows when the phase ends (`then`). Other messages fall back to extrapolating the
    fraction done (which weights the phases by fixed shares).

    Args:
        sink: called with (fraction in [0, 1], text).
        clock: time source (seconds); tests pass a fake one.
        then: what runs after a phase, by phase name (e.g. {"example": "cross-validation"}), for the message at its
            last step.
    """

    def __init__(self, sink: Callable[[float, str], Any], clock: Callable[[], float] | None = None,
                 then: dict[str, str] | None = None):
        import time

        self._sink = sink
        self._clock = clock or time.perf_counter
        self.start = self._clock()
        self.fraction = 0.0
        self.text = ""
        self.message = ""
        self.first_eta: float | None = None  # the first estimate shown, to compare with the time the run took
        self._then = then or {}
        self._phase: str | None = None
        self._phase_start = self.start
        self._last = self.start

    def elapsed(self) -> float:
        """Seconds since the start."""
        return self._clock() - self.start

    def eta(self, fraction: float) -> float | None:
        """Seconds left at `fraction` done, extrapolated from the fraction (None before there is anything to
        extrapolate from)."""
        elapsed = self._clock() - self.start
        if fraction <= 0.01 or elapsed <= 0:
            return None
        return elapsed * (1.0 - fraction) / fraction

    def _step_timing(self, now: float, phase: str, done: int, total: int) -> str:
        if phase != self._phase:  # a new phase began when the previous callback came
            self._phase, self._phase_start = phase, self._last
        if done >= total:
            after = self._then.get(phase)
            return f", {phase} done" + (f"; now {after}…" if after else "")
        if done <= 0:
            return ""
        each = (now - self._phase_start) / done
        left = each * (total - done)
        if self.first_eta is None:
            self.first_eta = left
        return f", about {duration_text(left)} left for the {phase} steps ({duration_text(each)} each, measured)"

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = self._clock()
        elapsed = now - self.start
        step = STEP_MESSAGE.match(message.strip())
        if step:
            timing = f"{duration_text(elapsed)} so far" + self._step_timing(
                now, step["phase"], int(step["done"]), int(step["total"]))
        else:
            left = self.eta(fraction)
            if left is not None and self.first_eta is None and fraction < 1:
                self.first_eta = left
            timing = f"{duration_text(elapsed)} so far" + (f", about {duration_text(left)} left" if left is not None
                                                           else "")
        self._last = now
        self.fraction, self.message = fraction, message
        self.text = f"{message} · {timing}" if message else timing
        self._sink(fraction, self.text)

    def stopped_text(self) -> str:
        """How far a stopped run got, with no estimate of a time left (it will not run): "example 2/6, after 1 min
        20 s"."""
        where = f"{self.message}, " if self.message else ""
        return f"{where}after {duration_text(self.elapsed())}"


def gradio_progress(progress: Any, then: dict[str, str] | None = None) -> ProgressEstimate:
    """A (fraction, message) callback for the library that drives a gr.Progress with an estimate of the time left
    (ProgressEstimate; `then` says what follows each counted phase)."""
    return ProgressEstimate(lambda f, text: progress(f, desc=text), then=then)
