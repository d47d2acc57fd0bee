"""Helpers shared by the panels: error translation, the session's model, hidden API endpoints, small HTML bits."""

from __future__ import annotations

import functools
import html
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from components.app_state import MODELS, Session, user_message
from grains.errors import GrainsError

log = logging.getLogger("grains.app")
MODEL_QUEUE = "model"  # every event that runs the model shares this queue (one at a time; users see their position)


def guarded(fn: Callable) -> Callable:
    """Turn GrainsError (bad input, bad file, ...) into gr.Error with its one-line message; log anything else and
    show a short message. The app keeps serving either way."""

    def translate(exc: BaseException) -> gr.Error:
        if isinstance(exc, gr.Error):
            return exc
        if not isinstance(exc, GrainsError):
            log.exception("unexpected error in %s", fn.__name__)
        # toasts render HTML: the message may quote user text (a model name, a file's contents), so escape it
        return gr.Error(html.escape(user_message(exc), quote=False), print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message
                raise translate(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc) from exc

    return wrapper


def warn(message: str) -> None:
    """A warning toast with `message` shown as text."""
    gr.Warning(html.escape(message, quote=False))


def session_model(session: Session) -> Any:
    """The session's model (reloaded into the shared cache if another session's load pushed it out)."""
    return MODELS.get(session.model_name)


def api_endpoint(fn: Callable, inputs: Sequence[Any], outputs: Sequence[Any], api_name: str,
                 description: str = "", queue_id: str | None = MODEL_QUEUE) -> Any:
    """A named API endpoint with a stable signature, fired only by clients (its trigger button is never shown)."""
    trigger = gr.Button(visible=False, elem_classes=["grains-api-trigger"])
    return trigger.click(guarded(fn), inputs=list(inputs), outputs=list(outputs), api_name=api_name,
                         api_description=description or (fn.__doc__ or "").strip().splitlines()[0],
                         concurrency_id=queue_id, show_progress="hidden")


def esc(text: Any) -> str:
    """HTML-escape any value."""
    return html.escape(str(text), quote=True)


def note_html(text: str, kind: str = "info") -> str:
    """A small coloured note box (kind: info, warn, error, ok); `text` is already safe HTML."""
    return f'<div class="grains-note grains-note-{kind}">{text}</div>'


def fmt_float(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if number != number:  # NaN
        return "n/a"
    return f"{number:.{digits}f}"
