"""Word-level diff of two texts as two self-contained HTML columns (steered against unsteered). Text is escaped."""

from __future__ import annotations

import difflib
import html
import re

_WORDS = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)
_DEL_STYLE = "background:#fbd3d3;color:#8a1010;text-decoration:line-through;border-radius:2px"
_INS_STYLE = "background:#d4f5d4;color:#0d5c0d;text-decoration:none;border-radius:2px"
_DIFF_BOX = ('<div class="grains-diff" style="white-space:pre-wrap;word-break:break-word;'
             'font-family:system-ui,sans-serif;line-height:1.5">')


def _split_words(text: str) -> list[str]:
    return _WORDS.findall(text)


def render_diff(a: str, b: str) -> tuple[str, str]:
    """Two HTML columns for texts a and b with word-level differences marked: words only in a as
    `<del class="grains-del">`, words only in b as `<ins class="grains-ins">`. All text is escaped."""
    wa, wb = _split_words(a or ""), _split_words(b or "")
    matcher = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
    left, right = [_DIFF_BOX], [_DIFF_BOX]
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        seg_a, seg_b = html.escape("".join(wa[a0:a1])), html.escape("".join(wb[b0:b1]))
        if op == "equal":
            left.append(seg_a)
            right.append(seg_b)
            continue
        if seg_a:
            left.append(f'<del class="grains-del" style="{_DEL_STYLE}">{seg_a}</del>')
        if seg_b:
            right.append(f'<ins class="grains-ins" style="{_INS_STYLE}">{seg_b}</ins>')
    left.append("</div>")
    right.append("</div>")
    return "".join(left), "".join(right)
