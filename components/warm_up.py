"""The first screen's answers computed before a class arrives (`python app.py --classroom`, or `--warm-up`): the
Attribute tab's example with its default settings, and the Compare tab's prompt, unsteered and steered with the
shipped vector at the sliders' first values, with its side-effect line. They go into the server's memory
(components.attribution_cache, components.generation_cache), so thirty students pressing the first buttons at once
read them at once (components.queue_bypass) instead of queueing behind the first student's computation.

The settings are the ones the page opens with (the same functions fill the page), so a press with nothing changed
asks exactly the question computed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from components.actions.attribution import run_attribution
from components.actions.compare import side_effect_line, stream_texts
from components.inputs import parse_stop, session_steering, settings_from
from components.model_cache import session_model
from components.scheduling import SHORT_QUEUE
from components.session import DEFAULT_COMPARE_PROMPT, DEFAULT_EXAMPLE, new_session
from components.steering_panel import slider_updates
from grains.attribution import DEFAULT_STEPS, DEFAULT_TOLERANCE
from grains.lanes import in_lane

FIRST_SCREEN_TOKENS = 40  # the Compare tab's "Max new tokens" first value


def warm_first_screen(model_name: str, log: Callable[[str], None] = print) -> list[str]:
    """Compute the first screen's attribution and side-by-side generation on `model_name` (loaded if needed) and
    keep them in the server's memory.

    Args:
        model_name: the app's default model.
        log: where each step's one line goes.

    Returns:
        One line per answer computed (what, and how long it took).
    """
    session = new_session(model_name)
    lm = session_model(session)
    done: list[str] = []

    def step(what: str, work: Callable[[], object]) -> None:
        started = time.perf_counter()
        with in_lane(SHORT_QUEUE):
            work()
        line = f"warm-up: {what} ({time.perf_counter() - started:.1f} s)"
        done.append(line)
        log(line)

    step("the Attribute tab's example", lambda: run_attribution(
        session, DEFAULT_EXAMPLE["prompt"], DEFAULT_EXAMPLE["chosen"], DEFAULT_EXAMPLE["rejected"], None,
        DEFAULT_STEPS, "sequence", "zero", "graded", DEFAULT_TOLERANCE * 100, None))
    if session.vector is None:
        return done
    layer_update, strength_update = slider_updates(session, lm)
    steering = session_steering(session, lm, layer_update["value"], strength_update["value"], True)
    settings = settings_from(FIRST_SCREEN_TOKENS, False, 1.0, 1.0, 0, parse_stop(True, ""))
    # streamed as the tab streams it, so the kept run has its token count for the page's summary
    step(f"the Compare tab's prompt, {steering.describe()}", lambda: (
        list(stream_texts(session, DEFAULT_COMPARE_PROMPT, None, steering, settings, None)),
        side_effect_line(lm, steering, None)))
    return done
