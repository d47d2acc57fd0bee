"""Self-contained HTML for token attribution heatmaps (no Gradio: notebooks, the CLI's HTML and the app share it).

Everything user-supplied is HTML-escaped. Styles are inline so the HTML renders alone; assets/style.css adds polish.
Each token is a `<span class="grains-tok" data-index="i">` so the app's JavaScript can hook clicks.
"""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

from grains.errors import InputError
from grains.viz.overlay import DIVERGING_STOPS, diverging_rgb, format_score, rgb_hex, symmetric_vmax

POS_BORDER = "#67001f"  # dark red: top-k positive
NEG_BORDER = "#053061"  # dark blue: top-k negative
DEFAULT_CAPTION = ("Red tokens push toward the chosen answer, blue toward the rejected one. "
                   "Outlined: the top-k of the scores shown (red outline: I+, the k highest; blue outline: I−, the k "
                   "lowest). A dashed outline is a token in a set by rank only, against its colour (e.g. a red token "
                   "in I− when fewer than k tokens are negative). "
                   "Grey, hatched, dashed outline: excluded from top-k (special or template tokens). "
                   "Hover a token for its score.")
EXCLUDED_STYLE = ["background:repeating-linear-gradient(135deg,#f1f1f1 0 4px,#e2e2e2 4px 8px)", "color:#8a8a8a",
                  "outline:1px dashed #b5b5b5", "outline-offset:-2px", "cursor:default"]
COLLAPSE_MIN = 4  # runs of at least this many hidden tokens become one chip

_VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible_token(token: str) -> str:
    """The token with whitespace made visible: leading/trailing spaces as '·', newlines '↵', tabs '⇥';
    other invisible characters as <U+XXXX>; an empty token as '∅'. Not escaped."""
    if token == "":
        return "∅"
    stripped = token.strip(" ")
    lead = len(token) - len(token.lstrip(" "))
    trail = len(token) - len(token.rstrip(" ")) if stripped else 0
    middle = stripped if stripped else ""
    out = ["·" * lead]
    for ch in middle:
        if ch in _VISIBLE and ch != " ":  # inner spaces stay spaces (the span keeps white-space:pre)
            out.append(_VISIBLE[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    out.append("·" * trail)
    return "".join(out)


def _indices(values: Iterable[int], n: int, what: str) -> set[int]:
    out = set()
    for v in values:
        i = int(v)
        if not 0 <= i < n:
            raise InputError(f"The {what} token index {i} is out of range for {n} tokens.")
        out.add(i)
    return out


def _text_colour(rgb: np.ndarray) -> str:
    """Black or white text, whichever reads better on the background."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#111" if luminance > 140 else "#fff"


def _css_gradient() -> str:
    stops = ", ".join(f"{rgb_hex(rgb)} {(p + 1) * 50:g}%" for p, rgb in DIVERGING_STOPS)
    return f"linear-gradient(to right, {stops})"


def _legend(vmax: float) -> str:
    bar = (f'<span class="grains-legend-bar" style="display:inline-block;width:160px;height:10px;'
           f'background:{_css_gradient()};border:1px solid #888;vertical-align:middle"></span>')
    labels = (f'<span class="grains-legend-labels" style="display:inline-flex;justify-content:space-between;'
              f'width:160px;font-size:11px;color:#444">'
              f'<span>{html.escape(format_score(-vmax))}</span><span>0</span>'
              f'<span>{html.escape(format_score(vmax))}</span></span>')
    keys = (f'<span class="grains-legend-key" style="margin-left:12px;font-size:11px">'
            f'<span style="border:2px solid {POS_BORDER};padding:0 4px">top-k +</span> '
            f'<span style="border:2px solid {NEG_BORDER};padding:0 4px">top-k −</span> '
            f'<span style="border:2px dashed {NEG_BORDER};padding:0 4px">by rank only</span> '
            f'<span style="{";".join(EXCLUDED_STYLE)};padding:0 4px">excluded</span>'
            f'</span>')
    return (f'<div class="grains-legend" style="margin-top:8px;display:flex;align-items:center;flex-wrap:wrap;'
            f'gap:4px"><span style="display:inline-flex;flex-direction:column">{bar}{labels}</span>{keys}</div>')


def _set_reason(positive: bool, negative: bool, against: bool) -> str:
    """The hover's words for a token's top-k set and why it is there."""
    if positive:
        return " · in I+ (top-k +): among the k highest scores" + (
            "; its score is negative: it is in I+ by rank only (fewer than k tokens score above 0)" if against else "")
    if negative:
        return " · in I− (top-k −): among the k lowest scores" + (
            "; its score is positive, so it pushes toward the chosen answer, only less than the others: it is in I− "
            "by rank only (fewer than k tokens score below 0)" if against else "")
    return ""


def render_token_heatmap(tokens: Sequence[str], scores: Sequence[float], selected_positive: Iterable[int] = (),
                         selected_negative: Iterable[int] = (), excluded: Iterable[int] = (),
                         title: str | None = None, caption: str | None = DEFAULT_CAPTION,
                         labels: Sequence[str] | None = None, hidden: Iterable[int] = (),
                         hidden_name: str = "template tokens") -> str:
    """HTML heatmap: one span per token, background from the shared diverging map centred at 0.

    The colour scale is symmetric, set by the largest |score| among the non-excluded tokens (special tokens
    such as BOS often dwarf the content); excluded tokens are grey and hatched instead of coloured.
    Selected top-k tokens get a solid border (dark red positive, dark blue negative). The hover title holds
    "index i · token · score" with the real token text. `caption=None` omits the caption.

    `labels` replaces the text shown per token (e.g. image tokens as "img 5 r1c1", see `display_tokens`); the hover
    keeps the real token. Tokens in `hidden` (e.g. a chat template's system prompt, see `template_indices`) are
    left out of the colour scale, and each run of `COLLAPSE_MIN` or more becomes one grey chip "… N template
    tokens" (shorter runs are drawn as excluded); `data-index` always holds the token's real index.
    """
    tokens = [str(t) for t in tokens]
    values = np.asarray(list(scores), dtype=np.float64).reshape(-1)
    n = len(tokens)
    if values.shape[0] != n:
        raise InputError(f"There are {n} tokens but {values.shape[0]} scores; they must match one to one.")
    pos = _indices(selected_positive, n, "selected positive")
    neg = _indices(selected_negative, n, "selected negative")
    exc = _indices(excluded, n, "excluded")
    hid = _indices(hidden, n, "hidden")
    shown = [str(t) for t in labels] if labels is not None else None
    if shown is not None and len(shown) != n:
        raise InputError(f"There are {n} tokens but {len(shown)} labels; they must match one to one.")
    runs = {start: stop for start, stop in _runs(sorted(hid)) if stop - start >= COLLAPSE_MIN}
    exc = exc | hid

    parts = ['<div class="grains-heatmap" style="font-family:ui-monospace,Menlo,Consolas,monospace;'
             'line-height:2.1;font-size:14px">']
    if title:
        parts.append(f'<div class="grains-heatmap-title" style="font-weight:600;margin-bottom:4px;'
                     f'font-family:system-ui,sans-serif">{html.escape(title)}</div>')
    if n == 0:
        parts.append('<div class="grains-empty" style="color:#777">No tokens to show.</div></div>')
        return "".join(parts)

    kept = [i for i in range(n) if i not in exc]
    vmax = symmetric_vmax(values[kept] if kept else values)
    colours = diverging_rgb(values, vmax=vmax)
    parts.append('<div class="grains-tokens" style="display:flex;flex-wrap:wrap;gap:3px 2px">')
    skip_to = -1
    for i, (tok, score) in enumerate(zip(tokens, values)):
        if i < skip_to:
            continue
        if i in runs:
            skip_to = runs[i]
            count = skip_to - i
            preview = "".join(tokens[i:skip_to]).strip()
            preview = preview[:60] + ("…" if len(preview) > 60 else "")
            parts.append(f'<span class="grains-tok-collapsed" data-first="{i}" data-count="{count}" '
                         f'title="{html.escape(f"tokens {i}–{skip_to - 1}: {preview}", quote=True)}" '
                         f'style="background:#f1f1f1;color:#777;border:1px dashed #b5b5b5;border-radius:3px;'
                         f'padding:1px 6px;font-family:system-ui,sans-serif;font-size:12px;white-space:nowrap">'
                         f'… {count} {html.escape(hidden_name)} ({i}–{skip_to - 1}) hidden</span>')
            continue
        classes = ["grains-tok"]
        style = ["padding:1px 3px", "border-radius:3px", "white-space:pre", "cursor:pointer",
                 "border:2px solid transparent"]
        if i in exc:
            classes.append("grains-excluded")
            style += EXCLUDED_STYLE
        else:
            style += [f"background:{rgb_hex(colours[i])}", f"color:{_text_colour(colours[i])}"]
        against = (i in pos and score < 0) or (i in neg and score > 0)  # in a set by rank, against its sign
        if i in pos:
            classes.append("grains-sel-pos")
            style.append(f"border-color:{POS_BORDER}")
        if i in neg:
            classes.append("grains-sel-neg")
            style.append(f"border-color:{NEG_BORDER}")
        if against:
            classes.append("grains-sel-by-rank")
            style.append("border-style:dashed")
        score_text = f"{score:+.4g}" if math.isfinite(score) else "nan"
        hover = f"index {i} · {tok} · {score_text}" + _set_reason(i in pos, i in neg, against)
        parts.append(
            f'<span class="{" ".join(classes)}" data-index="{i}" data-score="{html.escape(score_text)}" '
            f'title="{html.escape(hover, quote=True)}" style="{";".join(style)}">'
            f'{html.escape(visible_token(tok) if shown is None else shown[i])}</span>'
        )
    parts.append("</div>")
    parts.append(_legend(vmax))
    if caption:
        parts.append(f'<div class="grains-caption" style="font-size:12px;color:#555;margin-top:4px;'
                     f'font-family:system-ui,sans-serif;line-height:1.4">{html.escape(caption)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices -> [(start, stop), ...] runs of consecutive indices (stop exclusive)."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def template_indices(result: object, hide: bool = True) -> list[int]:
    """Prompt tokens that are neither the user's words nor image tokens (a chat template's system prompt and
    markers, "Q:"/"A:" of the qa format, BOS): collapsed by default in the heatmap and the bar chart.

    Args:
        result: an AttributionResult (content_mask, image_mask).
        hide: False gives [] (the "show template tokens" toggle).

    Returns:
        Token indices.
    """
    if not hide:
        return []
    content = list(getattr(result, "content_mask", []) or [])
    image = list(getattr(result, "image_mask", []) or []) or [False] * len(content)
    return [i for i, (c, im) in enumerate(zip(content, image)) if not c and not im]


def display_tokens(tokens: Sequence[str], image_mask: Sequence[bool] | None = None,
                   cells: Sequence[int] | None = None, grid_shape: Sequence[int] | None = None) -> list[str]:
    """Token texts for display, image tokens labelled with their patch instead of all reading "<image>".

    The k-th image token becomes "img k" plus its cell of the heatmap grid as "rRcC" (row, column from 0): from
    `cells` (the image layout's cell per image token, -1 for tokens off the grid, e.g. LLaVA-NeXT's other crops)
    with `grid_shape` (rows, cols), or, without `cells`, from `grid_shape` alone when it has exactly one cell per
    image token. Text tokens are shown as `visible_token` shows them.

    Returns:
        One label per token.
    """
    mask = list(image_mask or [False] * len(tokens))
    if len(mask) != len(tokens):
        raise InputError(f"There are {len(tokens)} tokens but {len(mask)} image flags; they must match one to one.")
    count = sum(bool(m) for m in mask)
    cols = int(grid_shape[1]) if grid_shape and len(grid_shape) == 2 and int(grid_shape[1]) > 0 else None
    if cells is not None and len(cells) != count:
        cells = None
    if cells is None and cols and int(grid_shape[0]) * cols == count:  # type: ignore[index]
        cells = list(range(count))
    out, k = [], 0
    for tok, im in zip(tokens, mask):
        if not im:
            out.append(visible_token(str(tok)))
            continue
        label = f"img {k}"
        if cells is not None and cols:
            cell = int(cells[k])
            label += f" r{cell // cols}c{cell % cols}" if cell >= 0 else " (other view)"
        out.append(label)
        k += 1
    return out


def result_labels(result: object, example: object = None) -> list[str]:
    """`display_tokens` for an AttributionResult (and its EncodedExample, whose image layout maps each image token
    to its grid cell); plain tokens when it has no image."""
    tokens = list(getattr(result, "tokens", []))
    image = list(getattr(result, "image_mask", []) or [])
    if not any(image):
        return [visible_token(str(t)) for t in tokens]
    extra = getattr(result, "extra", None) or {}
    cells = None
    prompt = getattr(example, "prompt", None)
    layout = (getattr(prompt, "extras", None) or {}).get("image_layout") if prompt is not None else None
    if isinstance(layout, dict) and layout.get("views"):
        view = layout["views"][0]
        cells = list(view.get("cells") or []) or None
        shape = view.get("shape") or extra.get("grid_shape")
    else:
        shape = extra.get("grid_shape")
    return display_tokens(tokens, image, cells, shape)
