"""Helpers shared by the panels: one translation of any failure into a user sentence, hidden API endpoints,
prompt-format selectors, outdated marks, one-status events, slider clamp notes, checked image uploads, small HTML bits
and the attribution chart (progress with an estimate: components.progress, re-exported here)."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr
import gradio.component_meta as _component_meta

from components.progress import ProgressEstimate, duration_text, gradio_progress  # noqa: F401 - panels use these
from components.queue_bypass import NotInMemory
from components.scheduling import LONG_QUEUE, SHORT_QUEUE, lane_for_api  # noqa: F401 - SHORT_QUEUE for panels
from components.session import user_message
from grains.errors import GrainsError

if TYPE_CHECKING:
    from grains.models import LoadedModel

log = logging.getLogger("grains.app")
# Every event that runs the model joins a lane (components.scheduling): SHORT_QUEUE for quick interactive jobs,
# LONG_QUEUE (also MODEL_QUEUE) for builds, evaluations and sweeps; the lanes run at the same time.
MODEL_QUEUE = LONG_QUEUE


# an absolute path (a server upload, the checkout, a cache): group 1 is its file name, shown instead
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s'\"/:,;()<>]+)+/([^\s'\"/:,;()<>]+)")
JSON_LINES_HINT = (" The app reads JSON Lines (one object per line, saved as .jsonl) or CSV; a JSON array file "
                   "must be saved one object per line.")


def without_paths(text: str) -> str:
    """`text` with every absolute path replaced by its file name ("/tmp/gradio/ab12/broken.jsonl" -> "broken.jsonl"):
    no message shows the server's folders."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), str(text))


def public_message(exc: BaseException) -> str:
    """THE sentence a user sees for any failure, on every tab: the GrainsError's message or a short generic line
    (components.session.user_message), with no server path, no Gradio internals and a hint where one helps.

    Args:
        exc: the failure (any exception, including Gradio's preprocess errors).

    Returns:
        Plain text (not escaped).
    """
    if isinstance(exc, gr.Error):
        return without_paths(str(exc.message))
    text = str(exc)
    if "Could not preprocess" in text or "UnidentifiedImageError" in text:  # Gradio's decode of an input failed
        return NOT_AN_IMAGE if ("image" in text or "Unidentified" in text) else (
            "One of the inputs could not be read; check the file you uploaded.")
    from grains.errors import DataError

    message = without_paths(user_message(exc))
    path = getattr(exc, "path", None)
    if isinstance(exc, DataError) and str(path or "").lower().endswith(".json"):
        message += JSON_LINES_HINT
    return message


def user_error(exc: BaseException) -> gr.Error:
    """`exc` as one toast (gr.Error) with public_message's sentence, HTML-escaped (toasts render HTML and the message
    may quote user text)."""
    if isinstance(exc, gr.Error):  # already escaped where it was raised
        return gr.Error(public_message(exc), print_exception=False)
    return gr.Error(html.escape(public_message(exc), quote=False), print_exception=False)


def guarded(fn: Callable) -> Callable:
    """Turn any failure into one toast with public_message's sentence (GrainsError: its own message; anything else
    is logged and shown as a short line). The app keeps serving either way."""

    def translate(exc: BaseException) -> gr.Error:
        if not isinstance(exc, (GrainsError, gr.Error)) and not getattr(exc, "user_facing", False):
            log.exception("unexpected error in %s", fn.__name__)
        return user_error(exc)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except NotInMemory:  # a queue probe's miss, not a failure (components.queue_bypass)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message
                raise translate(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotInMemory:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc) from exc

    return wrapper


def warn(message: str) -> None:
    """A warning toast with `message` shown as text."""
    gr.Warning(html.escape(message, quote=False))


def api_endpoint(fn: Callable, inputs: Sequence[Any], outputs: Sequence[Any], api_name: str,
                 description: str = "", queue_id: str | None = MODEL_QUEUE) -> Any:
    """A named API endpoint with a stable signature, fired only by clients (its trigger button is never shown); a
    model endpoint joins the lane components.scheduling.API_LANES gives its name."""
    if queue_id == MODEL_QUEUE:
        queue_id = lane_for_api(api_name)
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


def prompt_format_choices(lm: LoadedModel | None = None) -> list[tuple[str, str]]:
    """Dropdown choices for the prompt format; "chat" only for a model with a chat template."""
    from grains.prompts import has_chat_template

    has_template = True if lm is None else has_chat_template(lm.tokenizer)
    return [(label, name) for name, label in PROMPT_FORMAT_LABELS.items() if name != "chat" or has_template]


def prompt_format_update(lm: LoadedModel) -> Any:
    """The format dropdown for a (newly) loaded model: its valid formats, set to the model's own default."""
    return gr.update(choices=prompt_format_choices(lm), value=lm.prompt_format)


def prompt_format_dropdown(elem_id: str, label: str = "Prompt format") -> gr.Dropdown:
    """A prompt-format selector (its choices and value follow the loaded model on refresh)."""
    return gr.Dropdown(prompt_format_choices(None), value="raw", label=label, info=PROMPT_FORMAT_INFO,
                       elem_id=elem_id, interactive=True, min_width=160)


# ----------------------------------------------------------------------------------------------- outdated outputs

OUTDATED_CLASS = "grains-outdated"  # assets/style.css: greyed, with an "outdated" badge over the component


def outdated_html(html_text: str | None, reason: str) -> str:
    """Previous HTML output kept visible but marked outdated: greyed, with a one-line banner saying why.

    Args:
        html_text: the HTML that was on screen (already safe HTML); empty gives "".
        reason: why it no longer applies, plain text (escaped here), e.g. "the model changed".

    Returns:
        The wrapped HTML (idempotent: already-marked HTML is re-marked with the new reason only).
    """
    if not html_text:
        return ""
    inner = str(html_text)
    marker = '<div class="grains-outdated-body">'
    if inner.startswith(f'<div class="{OUTDATED_CLASS}">') and marker in inner:
        inner = inner.split(marker, 1)[1].rsplit("</div></div>", 1)[0]
    return (f'<div class="{OUTDATED_CLASS}"><div class="grains-outdated-banner">Outdated: {esc(reason)}. Run it '
            f'again to update.</div>{marker}{inner}</div></div>')


def mark_outdated(outdated: bool = True, classes: Sequence[str] = ()) -> Any:
    """An update that marks any component (plot, table, JSON, image) outdated or fresh through its CSS classes.

    Args:
        outdated: True adds the "outdated" class (greyed, with a badge), False removes it.
        classes: the component's own elem_classes, kept.

    Returns:
        A gr.update(elem_classes=...) for the component.
    """
    kept = [c for c in classes if c != OUTDATED_CLASS]
    return gr.update(elem_classes=kept + [OUTDATED_CLASS] if outdated else kept)


def model_changed_reason(old: str | None, new: str) -> str:
    """'the model changed (A → B)' for an outdated banner."""
    return f"the model changed ({old} → {new})" if old and old != new else "the model changed"


# ------------------------------------------------------------------------------------------ one error, one place

def one_status(status: Any, progress: str = "full") -> dict[str, Any]:
    """Event options that show progress, the queue position and any error on ONE component (`status`), not on
    every output. Gradio 6 otherwise draws its status tracker (spinner, "queue: 2/3", and on an error a red "Error"
    badge that hides the component's content) over each output of the event.

    Use: `button.click(fn, inputs, outputs, **one_status(status_note))`; raise gr.Error (or let `guarded` turn a
    GrainsError into one) as usual: the message shows once, as a toast, and the badge only on `status`.

    Args:
        status: the component (usually a small gr.HTML note) that carries the progress bar and the error badge.
        progress: "full" (bar, ETA, queue position), "minimal" or "hidden".

    Returns:
        Keyword arguments for an event listener.
    """
    return {"show_progress": progress, "show_progress_on": [status]}


def error_note(exc: BaseException) -> str:
    """The one-line note for a failure, as HTML (for handlers that report into a note instead of raising)."""
    return note_html(f"<b>Could not do that:</b> {esc(public_message(exc))}", "error")


# A number typed into a slider's box outside its range is clamped by Gradio's frontend on blur, silently; this says
# so under the slider (a capture listener sees the typed value before the slider clamps it). Installed once per page
# by an empty gr.HTML(js_on_load=CLAMP_NOTE_JS).
CLAMP_NOTE_JS = """
if (!window.__grainsClampNotes) {
  window.__grainsClampNotes = true;
  const check = (input) => {
    if (!input || !input.matches || !input.matches('input[type=number][data-testid=number-input]')) return;
    const block = input.closest('.block') || input.parentElement;
    const old = block.querySelector('.grains-clamp-note');
    if (old) old.remove();
    const raw = input.value, value = Number(raw), min = Number(input.min), max = Number(input.max);
    if (raw === '' || Number.isNaN(value) || input.min === '' || input.max === '') return;
    if (value >= min && value <= max) return;
    const to = value > max ? max : min;
    const note = document.createElement('div');
    note.className = 'grains-note grains-note-warn grains-clamp-note';
    note.textContent = `${raw} is outside ${min} to ${max}: set to ${to}, the ${value > max ? 'largest' : 'smallest'}`
      + ' value this slider allows.';
    block.appendChild(note);
    input.value = String(to);  // Enter would otherwise send the typed value to the server before any clamp
    input.dispatchEvent(new Event('input', {bubbles: true}));
  };
  document.addEventListener('blur', (event) => check(event.target), true);
  document.addEventListener('keydown', (event) => { if (event.key === 'Enter') check(event.target); }, true);
  document.addEventListener('input', (event) => {  // the slider moved again: the note no longer applies
    const block = event.target && event.target.closest && event.target.closest('.block');
    const old = block && event.target.type === 'range' && block.querySelector('.grains-clamp-note');
    if (old) old.remove();
  }, true);
}
"""


# ---------------------------------------------------------------------------------------------------- images

NOT_AN_IMAGE = "That file is not an image we can read (try a PNG or JPEG photo)."
OVERLAY_HEIGHT = 480  # px: the patch overlay is shown this tall (the overlay keeps the photo's own size)
OVERLAY_ALPHA = 0.75  # default heatmap opacity over the photo


def image_path_or_error(path: Any) -> str | None:
    """The uploaded file's path when it decodes as an image (checked with grains.images.load_image); a plain
    InputError otherwise, never quoting the server's temp path or the decoder's exception."""
    if not path:
        return None
    from grains.errors import ImageError, InputError
    from grains.images import load_image

    try:
        load_image(str(path))
    except ImageError as exc:
        message = str(exc)
        if "megapixels" in message or "MB" in message:  # size limits: the library's own words are plain
            raise InputError(message) from None
        raise InputError(NOT_AN_IMAGE) from None
    return str(path)


# Gradio's component metaclass writes a typing stub (.pyi) beside any file that defines a component class; it is
# switched off while SafeImage is defined, so importing the app never writes into the checkout.
_write_stub, _component_meta.create_or_modify_pyi = _component_meta.create_or_modify_pyi, lambda *args: None


class SafeImage(gr.Image):
    """A gr.Image whose upload reaches handlers as a file path checked by grains.images (the decoder every handler
    uses), never decoded by Gradio: a file that is not an image gives one plain sentence ("That file is not an image
    we can read ...") instead of Gradio's "Could not preprocess input component ... UnidentifiedImageError" with the
    server's upload path. A subclass (not a patched instance), so the copies Gradio makes of a component per
    session (after an update) keep the check; `is_template` makes the frontend draw a plain image input.

    Args:
        kwargs: gr.Image's arguments (safe_image sets type="filepath").
    """

    is_template = True  # no __init__ of its own: Gradio reads a component's props from its __init__ signature

    def preprocess(self, payload: Any) -> str | None:
        """The uploaded file's path once grains.images has decoded it; one plain gr.Error otherwise."""
        if payload is None:
            return None
        raw = getattr(payload, "path", None)
        if not raw:
            raise gr.Error(NOT_AN_IMAGE, print_exception=False)
        try:
            return image_path_or_error(raw)
        except GrainsError as exc:
            raise gr.Error(html.escape(public_message(exc), quote=False), print_exception=False) from None


_component_meta.create_or_modify_pyi = _write_stub


def safe_image(**kwargs: Any) -> gr.Image:
    """A SafeImage (gr.Image, type="filepath", checked with grains.images before any handler runs).

    Args:
        kwargs: gr.Image's arguments.

    Returns:
        The component.
    """
    return SafeImage(**{**kwargs, "type": "filepath"})


# ------------------------------------------------------------------------------------------- attribution chart

EXCLUDED_BAR = "#d0d0d0"


def attribution_chart(tokens: Sequence[str], scores: Sequence[float], selected: Sequence[int] = (),
                      excluded: Sequence[int] = (), hidden: Sequence[int] = (), labels: Sequence[str] | None = None,
                      title: str | None = None) -> Any:
    """The per-token bar chart (components.charts.attribution_bar_chart) with the heatmap's conventions: tokens in
    `hidden` (template / system prompt, see grains.viz.heatmap.template_indices) are left out; tokens in `excluded`
    (not selectable by top-k) are drawn grey and hatched, unlike selectable ones; x labels keep each token's real
    index, and `labels` (e.g. grains.viz.heatmap.display_tokens) replaces the token text shown.

    Returns:
        A plotly Figure.
    """
    from components.charts import _plotly_text, attribution_bar_chart

    n = len(tokens)
    if len(scores) != n:
        from grains.errors import InputError

        raise InputError(f"There are {n} tokens but {len(scores)} scores; they must match one to one.")
    hide = {int(i) for i in hidden}
    keep = [i for i in range(n) if i not in hide] or list(range(n))
    position = {i: j for j, i in enumerate(keep)}
    sub_selected = [position[int(i)] for i in selected if int(i) in position]
    fig = attribution_bar_chart([tokens[i] for i in keep], [scores[i] for i in keep], selected=sub_selected,
                                title=title)
    from grains.viz.heatmap import visible_token

    shown = list(labels) if labels is not None else [visible_token(str(t)) for t in tokens]
    bar = fig.data[0]
    bar.x = [f"{i}: {_plotly_text(shown[i])}" for i in keep]
    custom = [list(row) for row in bar.customdata]
    for j, i in enumerate(keep):
        custom[j][0] = i
    bar.customdata = custom
    out = {int(i) for i in excluded}
    colours = list(bar.marker.color)
    patterns = ["" for _ in keep]
    for j, i in enumerate(keep):
        if i in out:
            colours[j] = EXCLUDED_BAR
            patterns[j] = "/"
    bar.marker.color = colours
    bar.marker.pattern = {"shape": patterns, "fgcolor": "#8a8a8a", "solidity": 0.3}
    if hide and len(keep) < n:
        note = f"{n - len(keep)} template tokens hidden; grey hatched bars: not selectable by top-k"
        fig.add_annotation(text=_plotly_text(note), xref="paper", yref="paper", x=0, y=1.08, showarrow=False,
                           font={"size": 11, "color": "#666"}, xanchor="left")
    elif out:
        fig.add_annotation(text="grey hatched bars: not selectable by top-k", xref="paper", yref="paper", x=0,
                           y=1.08, showarrow=False, font={"size": 11, "color": "#666"}, xanchor="left")
    return fig
