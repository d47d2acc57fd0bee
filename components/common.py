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


PROMPT_FORMAT_LABELS = {"raw": "raw: the text as written", "qa": "qa: Q: … A:", "chat": "chat: the model's template"}
PROMPT_FORMAT_SHORT = {"raw": "raw (as written)", "qa": "qa (Q: … A:)", "chat": "chat (template)"}
PROMPT_FORMAT_INFO = "what the model sees; default: chat if the model has a template, else raw"


def prompt_format_choices(lm: Any = None) -> list[tuple[str, str]]:
    """Dropdown choices for the prompt format; "chat" only for a model with a chat template."""
    from grains.prompts import has_chat_template

    has_template = True if lm is None else has_chat_template(lm.tokenizer)
    return [(label, name) for name, label in PROMPT_FORMAT_LABELS.items() if name != "chat" or has_template]


def prompt_format_update(lm: Any) -> Any:
    """The format dropdown for a (newly) loaded model: its valid formats, set to the model's own default."""
    return gr.update(choices=prompt_format_choices(lm), value=lm.prompt_format)


def prompt_format_dropdown(elem_id: str, label: str = "Prompt format") -> gr.Dropdown:
    """A prompt-format selector (its choices and value follow the loaded model on refresh)."""
    return gr.Dropdown(prompt_format_choices(None), value="raw", label=label, info=PROMPT_FORMAT_INFO,
                       elem_id=elem_id, interactive=True, min_width=160)


def chosen_format(value: Any) -> str | None:
    """A UI/API prompt format value: "" or None -> None (the model's default), else the name (checked later)."""
    text = str(value).strip() if value is not None else ""
    return text or None
