"""Compare tab views: a result marked outdated, the degenerate-text warning, the strength sweep table and the line
naming the vector this tab steers with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from components.common import esc, note_html
from grains.fluency import degeneracy

if TYPE_CHECKING:
    from components.session import Session
    from grains.generation import GenerationSettings

WAITING = '<div class="grains-placeholder">Press Generate.</div>'
SWEEP_WAITING = '<div class="grains-placeholder">Press Run sweep.</div>'
OUTDATED_MARK = '<div class="grains-outdated">'
SWEEP_TABLE_HEADERS = ["strength", "continuation", "vs unsteered", "KL on neutral prompts (nats)"]
SWEEP_HTML_HEADERS = ["strength", "continuation", "KL (nats)", "what changed"]


def outdated_html(value: Any, what: str = "an input") -> Any:
    """`value` (HTML on screen) marked as outdated: a warning on top and the old content faded below. Placeholders,
    empty values and already-marked values are left as they are (returns gr.update() then)."""
    text = str(value or "")
    if not text or "grains-placeholder" in text or text.startswith(OUTDATED_MARK):
        return gr.update()
    # its own class, not grains-note-warn: a finished run's warnings and this mark stay apart
    banner = (f'<div class="grains-note grains-outdated-note" style="background:#fef3c7;border:1px solid #f59e0b;'
              f'color:#78350f;padding:6px 10px;border-radius:6px;margin-bottom:6px;"><b>Outdated:</b> {esc(what)} '
              "changed since this was computed. Run it again for current results.</div>")
    return (OUTDATED_MARK + banner
            + f'<div class="grains-outdated-body" style="opacity:0.45">{text}</div></div>')


def degenerate_note(text: str, unsteered: str | None = None) -> str:
    """A visible warning for a degenerate continuation (grains.fluency.degeneracy), or "". For a steered text,
    `unsteered` is the unsteered row of the same run: when it repeats too, the note says the model repeats without
    steering as well, instead of blaming steering.

    Args:
        text: the continuation.
        unsteered: the unsteered continuation it is compared with (None: `text` is the unsteered row).

    Returns:
        The note's HTML, or "".
    """
    reason = degeneracy(text)
    if not reason:
        return ""
    if unsteered is None:
        return note_html(f"<b>Degenerate output</b> ({esc(reason)}): the unsteered model repeats itself on this "
                         "prompt; steering is not the cause of repetition in either row.", "warn")
    if degeneracy(unsteered):
        return note_html(f"<b>Degenerate output</b> ({esc(reason)}), but the unsteered row repeats too: the model "
                         "does this without steering, so it is not a sign that steering is too hard.", "info")
    return note_html(f"<b>Degenerate output</b> ({esc(reason)}) while the unsteered row is fluent: steering this "
                     "hard breaks the text; read it as a side effect, not an answer.", "warn")


def sweep_table_html(rows: list[list[Any]], waiting: list[float] = ()) -> str:
    """The sweep as an HTML table: fixed column widths (the header never wraps), long words broken inside their
    cell, degenerate rows marked; `waiting` strengths (still running) as greyed placeholder rows."""
    cell = "padding:4px 8px;vertical-align:top;border-bottom:1px solid #e5e7eb;"
    wrap = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;"
    head = "".join(f'<th style="{cell}white-space:nowrap;text-align:left;">{esc(h)}</th>' for h in SWEEP_HTML_HEADERS)
    body = []
    for value, text, versus, kl_value in rows:
        flag = "DEGENERATE" in str(versus)
        style = "background:#fef3c7;" if flag else ""
        kl_text = "" if kl_value is None else f"{float(kl_value):.4f}"
        body.append(f'<tr class="{"grains-degenerate" if flag else ""}" style="{style}">'
                    f'<td style="{cell}white-space:nowrap;text-align:right;">{float(value):g}</td>'
                    f'<td style="{cell}{wrap}">{esc(text)}</td>'
                    f'<td style="{cell}white-space:nowrap;text-align:right;">{kl_text}</td>'
                    f'<td style="{cell}{wrap}">{"⚠ " if flag else ""}{esc(versus)}</td></tr>')
    for value in waiting:
        body.append(f'<tr class="grains-sweep-waiting" style="color:#9ca3af;">'
                    f'<td style="{cell}white-space:nowrap;text-align:right;">{float(value):g}</td>'
                    f'<td style="{cell}" colspan="3">waiting…</td></tr>')
    colgroup = ('<colgroup><col style="width:80px"><col><col style="width:110px"><col style="width:28%"></colgroup>')
    return (f'<div class="grains-sweep-table" style="max-width:100%;overflow-x:hidden;">'
            f'<table style="width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.92em;">{colgroup}'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def vector_line(session: Session) -> str:
    """Which vector this tab steers with: the session's (its layer and strength are the sliders below)."""
    if session.vector is None:
        return note_html("No steering vector in this session: Generate shows the unsteered continuation alone; build "
                         "or load a vector on the Steer tab to see the steered one beside it.", "warn")
    v = session.vector
    suggested = ""
    if getattr(v, "default_layer", None) is not None and getattr(v, "default_strength", None) is not None:
        suggested = f" (suggested: layer {v.default_layer}, strength {float(v.default_strength):g})"
    return note_html(f"Steering with the session's vector <b>{esc(session.vector_label)}</b>{esc(suggested)}. The "
                     "layer and strength below are the session's setting, the same as on the Steer tab: changing "
                     "them here changes them there.", "info")


def generation_summary(count: int | None, seconds: float, settings: GenerationSettings, identical: bool,
                       cached: bool = False) -> str:
    """The finished side-by-side run in one line (HTML): tokens, time (or served from the server's memory), how the
    rows were paired, stop sequences."""
    same = "The two continuations are identical." if identical else "Differences are highlighted."
    paired = "same random draw per step" if settings.do_sample else "greedy"
    stops = (" Stop sequences: " + ", ".join(repr(x) for x in settings.stop) + " (each row ends before one)."
             if settings.stop else "")
    return f"{run_time_text(count, seconds, cached)} (both rows in one batch, {paired}, seed {settings.seed}). " \
           f"{same}{esc(stops)}"


def run_time_text(count: int | None, seconds: float, cached: bool = False) -> str:
    """How long a side-by-side run took: its tokens and seconds, or that it was served from the server's memory
    (`count` None: a run kept without its token count)."""
    if cached:
        return ("Computed earlier" if count is None else f"{count} tokens, computed earlier") + \
            "; served from this server's memory"
    return f"{count} tokens in {seconds:.1f} s"
