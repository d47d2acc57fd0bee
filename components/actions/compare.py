"""Compare tab actions: the exact model input, unsteered and steered continuations (streamed or at once, one batch,
paired sampling) under one `Steering`, a strength sweep with each strength's side effect, and the quick KL meter."""

from __future__ import annotations

import difflib
import threading
import time
from typing import TYPE_CHECKING, Any

from components.generation_cache import GENERATIONS, FinishedGeneration
from components.inputs import chosen_format, open_image
from components.model_cache import session_model
from components.result_cache import ResultCache, steering_digest
from components.session import Session
from grains.errors import Cancelled
from grains.fluency import degeneracy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from grains.generation import GenerationSettings, PairedGeneration
    from grains.models import LoadedModel
    from grains.side_effects import NeutralKL
    from grains.steering import Steering

STOP_FLAGS: dict[Any, bool] = {}  # job_key(session) -> stop requested for this session's running strength sweep
GENERATING: dict[Any, int] = {}  # job_key(session) -> tokens so far of its running side-by-side run (gone when done)
_GENERATING_LOCK = threading.Lock()  # a step's check-and-count and Stop's take are one step each


def job_key(session: Session) -> Any:
    """The key of a session's running job: its browser's store key when it has one (the Session object a Stop
    handler receives need not be the one the job holds), else the object's id."""
    return getattr(session, "store_key", "") or id(session)


def model_input_text(session: Session, prompt: str, image: Any, prompt_format: Any) -> str:
    """The exact text the model sees for `prompt` in `prompt_format` (None: the model's default)."""
    lm = session_model(session).with_format(chosen_format(prompt_format))
    return lm.encode_prompt(prompt, image=image).text


class TextStream:
    """Unsteered and steered continuations so far, step by step, in one batch with paired sampling; a run asked
    before (components.generation_cache) comes back at once, as one step. After the loop, `finished` holds the run
    (texts, streamed steps, whether it was served from memory); a run closed early is neither kept nor finished.

    Args:
        session: whose model.
        prompt: as the user typed it.
        image_path: a photo for a VLM (ignored by a text model).
        steering: the checked setting (components.inputs.session_steering), or None for two unsteered rows.
        settings: decoding settings.
        prompt_format: raw / qa / chat (None: the model's).
    """

    def __init__(self, session: Session, prompt: str, image_path: str | None, steering: Steering | None,
                 settings: GenerationSettings, prompt_format: Any = None):
        self.session, self.prompt, self.image_path = session, prompt, image_path
        self.steering, self.settings, self.prompt_format = steering, settings, chosen_format(prompt_format)
        self.finished: FinishedGeneration | None = None
        self.stopped = False  # Stop took the run (see counted_steps): nothing more is to be shown

    def __iter__(self) -> Iterator[tuple[str, str]]:
        from grains.generation import PairedGeneration, stream_pair

        lm = session_model(self.session)
        image = open_image(self.image_path, lm) if lm.is_vlm else None
        key = GENERATIONS.key(lm, self.prompt, self.prompt_format, self.image_path if lm.is_vlm else None,
                              self.steering, self.settings)
        found = GENERATIONS.get(lm, key)
        if found is not None:
            self.finished = found
            yield found.pair.unsteered, found.pair.steered
            return
        steps, u, s = 0, "", ""
        for u, s in stream_pair(lm, self.prompt, self.steering, settings=self.settings, image=image,
                                prompt_format=self.prompt_format):
            steps += 1
            yield u, s
        text = model_input_text(self.session, self.prompt, image, self.prompt_format)
        self.finished = FinishedGeneration(PairedGeneration(u, s, text), steps)
        GENERATIONS.put(lm, key, self.finished)

    def tokens(self, seen: int) -> tuple[int | None, bool]:
        """(tokens of the run, whether it came from memory), given the `seen` steps the caller counted: a run from
        memory arrives as one step, so its own count is used (None when it was computed without streaming, by the
        API, and its count was not kept)."""
        if self.finished is not None and self.finished.cached:
            return self.finished.steps, True
        return seen, False


def stream_texts(session: Session, prompt: str, image_path: str | None, steering: Steering | None,
                 settings: GenerationSettings, prompt_format: Any = None) -> TextStream:
    """The (unsteered, steered) texts so far, token by token, one batch with paired sampling.

    Returns:
        A TextStream: iterate it for the texts; its `finished` says afterwards whether they came from memory.
    """
    return TextStream(session, prompt, image_path, steering, settings, prompt_format)


def counted_steps(session: Session, stream: TextStream) -> Iterator[tuple[int, str, str]]:
    """(steps so far, unsteered, steered) per step of `stream`, the count kept in GENERATING while it runs.

    Stop is cooperative (`take_generating_count`): it takes the count, and the next step that finds it taken ends
    the run here and sets `stream.stopped`, so the caller's last message says "Stopped after ...". The run is not
    cancelled from outside: a cancel could land after a "Generating…" message was sent and before that last one,
    leaving "Generating…" on screen for good."""
    key = job_key(session)
    with _GENERATING_LOCK:
        GENERATING[key] = count = 0
    steps = iter(stream)
    try:
        for u, s in steps:
            with _GENERATING_LOCK:  # a Stop between the check and the count would be undone by the count
                stopped = key not in GENERATING
                if not stopped:
                    count += 1
                    GENERATING[key] = count
            if stopped:
                stream.stopped = True
                steps.close()  # the generation's own finally stops the worker and takes the hooks off
                return
            yield count, u, s
    finally:  # also when the stream fails (a queue probe's miss): no count is left for Stop to find
        GENERATING.pop(key, None)


def take_generating_count(session: Session) -> int | None:
    """Stop the session's running side-by-side run: take its count of steps so far (its next step then ends it).

    Args:
        session: the session whose run to stop.

    Returns:
        The steps it had generated, or None when no run of this session was generating.
    """
    with _GENERATING_LOCK:
        return GENERATING.pop(job_key(session), None)


def remember_generation(session: Session, prompt: str, steering: Steering, settings: GenerationSettings,
                        prompt_format: Any) -> None:
    """Record the last side-by-side run's settings (Show code reproduces it)."""
    session.last_generation = {"model": session.model_name, "prompt": prompt,
                               "layer": steering.layers[0], "strength": steering.strength,
                               "max_new_tokens": settings.max_new_tokens, "normalize": steering.normalize,
                               "do_sample": settings.do_sample, "seed": settings.seed,
                               "temperature": settings.temperature, "top_p": settings.top_p,
                               "stop": list(settings.stop), "prompt_format": chosen_format(prompt_format)}


def generate_texts(session: Session, prompt: str, image_path: str | None, steering: Steering,
                   settings: GenerationSettings, prompt_format: Any = None) -> PairedGeneration:
    """Both continuations in one batch (paired sampling); the run's settings are kept for Show code.

    Args:
        session: whose model.
        prompt: as the user typed it.
        image_path: a photo for a VLM.
        steering: the checked setting.
        settings: decoding settings.
        prompt_format: raw / qa / chat (None: the model's).

    Returns:
        The library's PairedGeneration.
    """
    from grains.generation import generate_pair

    lm = session_model(session)
    fmt = chosen_format(prompt_format)
    key = GENERATIONS.key(lm, prompt, fmt, image_path if lm.is_vlm else None, steering, settings)
    found = GENERATIONS.get_or_compute(lm, key, lambda: FinishedGeneration(generate_pair(
        lm, prompt, steering, settings=settings, image=open_image(image_path, lm), prompt_format=fmt), None))
    remember_generation(session, prompt, steering, settings, prompt_format)
    return found.pair


def change_summary(text: str, base: str | None) -> str:
    """What changed against the unsteered text: same, or where it first differs and how much differs."""
    if base is None:
        return ""
    if text == base:
        return "same as unsteered"
    a, b = base.split(), text.split()
    shared = 0
    for x, y in zip(a, b):
        if x != y:
            break
        shared += 1
    ratio = difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()
    return f"differs from unsteered after {shared} shared word{'s' if shared != 1 else ''} ({1 - ratio:.0%} different)"


def eta_text(start: float, done: int, total: int) -> str:
    """", 12 s elapsed, about 30 s left" from the mean time per finished unit ("" before the first one)."""
    elapsed = time.perf_counter() - start
    if done <= 0:
        return f", {elapsed:.0f} s elapsed"
    left = elapsed / done * (total - done)
    return f", {elapsed:.0f} s elapsed, about {left:.0f} s left"


def sweep_rows(session: Session, prompt: str, image_path: str | None, steerings: list[Steering],
               settings: GenerationSettings, progress: Any = None, prompt_format: Any = None, kl: bool = True,
               should_stop: Any = None) -> Iterator[list[list[Any]]]:
    """The strength sweep, row by row: one steered continuation per Steering (strength 0 = unsteered), same seed and
    stop sequences, each with its mean KL on neutral prompts (its side effect) and what changed against the
    unsteered text (generated first, once more when 0 is not in the list), degenerate text flagged. No row is named
    best: the rows are for reading side by side.

    Args:
        session: whose model.
        prompt: as the user typed it.
        image_path: a photo for a VLM.
        steerings: one checked Steering per strength (components.inputs.sweep_steerings).
        settings: decoding settings (the same seed and stop sequences for every row).
        progress: gr.Progress-like callback (fraction, desc=...).
        prompt_format: raw / qa / chat (None: the model's).
        kl: measure each strength's mean KL on neutral prompts.
        should_stop: polled before each generation; True raises Cancelled (the rows yielded so far stay valid).

    Returns:
        An iterator of the finished rows so far [strength, text, what changed, KL], in the order asked, after each
        generation (the last item is the whole table).
    """
    from grains.generation import generate_one

    lm = session_model(session).with_format(chosen_format(prompt_format))
    values = [steering.strength for steering in steerings]
    image = open_image(image_path, lm) if lm.is_vlm else None
    meter = neutral_kl(session_model(session)) if kl else None
    total = len(values) + (0 if 0 in values else 1)
    start = time.perf_counter()
    finished: dict[int, list[Any]] = {}

    def tick(done: int, what: str) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"Sweep stopped by the user after {done} of {total} generations.")
        if progress:
            progress(done / total, desc=f"{what} · {done}/{total} done{eta_text(start, done, total)}")

    tick(0, "unsteered (for comparison)")
    base = generate_one(lm, prompt, None, settings=settings, image=image)
    done = 1
    for i, value in enumerate(values):  # the unsteered row is already there
        if value == 0:
            finished[i] = [value, base, "unsteered", 0.0 if meter is not None else None]
    yield [finished[i] for i in sorted(finished)]
    for i, (value, steering) in enumerate(zip(values, steerings)):
        if i in finished:
            continue
        tick(done, f"strength {value:g}")
        text = (base if steering.is_identity else
                generate_one(lm, prompt, steering, settings=settings, image=image))
        kl_value = (0.0 if steering.is_identity else round(meter.mean(steering), 4)) if meter is not None else None
        versus = change_summary(text, base)
        reason = degeneracy(text)
        if reason:
            versus = f"{versus}; DEGENERATE ({reason})"
        finished[i] = [value, text, versus, kl_value]
        done += 1
        yield [finished[i] for i in sorted(finished)]


def strength_sweep(session: Session, prompt: str, image_path: str | None, steerings: list[Steering],
                   settings: GenerationSettings, progress: Any = None, prompt_format: Any = None,
                   kl: bool = True, should_stop: Any = None) -> list[list[Any]]:
    """The whole strength sweep at once (the API): the last table of `sweep_rows`, same arguments.

    Returns:
        Rows [strength, text, what changed, KL], in the order asked.
    """
    *_, rows = sweep_rows(session, prompt, image_path, steerings, settings, progress, prompt_format, kl, should_stop)
    return rows


_METERS: dict[int, tuple[Any, NeutralKL]] = {}  # id(weights) -> their meter (the unsteered side, computed once)


def neutral_kl(lm: LoadedModel) -> NeutralKL:
    """The side-effect meter of every figure in the app (grains.side_effects.kl_meter: mean KL on all the shipped
    neutral prompts), as the vector card, the build's budget and the Evaluate tab measure it: one prompt set, one
    figure for one setting. The unsteered side is computed once per loaded model.

    Args:
        lm: the session's model (as loaded, in its own format).

    Returns:
        The grains.side_effects.NeutralKL.
    """
    from grains.side_effects import kl_meter

    held = _METERS.get(id(lm.model))
    if held is None or held[0] is not lm.model:
        while len(_METERS) >= 2:  # the model cache keeps few models; so does this
            _METERS.pop(next(iter(_METERS)))
        held = _METERS[id(lm.model)] = (lm.model, kl_meter(lm))
    return held[1]


# the line for each setting, measured once per model: a class generating with one vector reads it from here
SIDE_EFFECT_LINES: ResultCache[str] = ResultCache(max_entries=64)


def side_effect_line(lm: LoadedModel, steering: Steering, prompt_format: Any = None) -> str:
    """One line: the setting's mean KL on the neutral prompts (0 exactly at strength 0), against the budget (the
    same figure as the vector card's for the same setting: neutral_kl); kept per model and setting."""
    key = (id(lm.model), steering_digest(steering))
    return SIDE_EFFECT_LINES.get_or_compute(lm, key, lambda: _measure_side_effect_line(lm, steering))


def _measure_side_effect_line(lm: LoadedModel, steering: Steering) -> str:
    from grains.side_effects import DEFAULT_KL_BUDGET

    meter = neutral_kl(lm)
    if steering.is_identity:
        return f"At strength 0 the model is not steered: no side effect (KL 0 on {len(meter.prompts)} neutral prompts)."
    kl = meter.mean(steering)
    over = "over" if kl > DEFAULT_KL_BUDGET else "within"
    return (f"Side effect of this setting: mean KL {kl:.3f} nats on {len(meter.prompts)} neutral prompts "
            f"({over} the budget of {DEFAULT_KL_BUDGET:g}).")
