"""Token heatmap HTML: escaped user text, one span per token, selection/exclusion marks, colours; text diffs."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from grains.errors import InputError
from grains.viz.heatmap import render_token_heatmap, visible_token
from grains.viz.overlay import DIVERGING_STOPS, rgb_hex


class _Spans(HTMLParser):
    """Collects every grains-tok span: its attributes and its text; also every tag name seen."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict] = []
        self.tags: list[str] = []
        self._open: dict | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "span" and "grains-tok" in (a.get("class") or "").split():
            self._open = {"attrs": a, "text": ""}
            self.spans.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data


def _parse(html: str) -> _Spans:
    p = _Spans()
    p.feed(html)
    p.close()
    return p


PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '" onmouseover="alert(1)', "&amp;"]


def test_payloads_render_as_text_not_markup() -> None:
    out = render_token_heatmap(PAYLOADS, [1.0, -1.0, 0.5, 0.0], title="<script>t</script>",
                               caption="<img src=y onerror=1>")
    assert "<script" not in out.lower()
    assert "<img" not in out.lower()
    parsed = _parse(out)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert len(parsed.spans) == len(PAYLOADS)
    for span, payload in zip(parsed.spans, PAYLOADS):
        assert span["text"] == payload  # shown literally (no spaces to mark in these)
        assert "onmouseover" not in span["attrs"] and "onerror" not in span["attrs"]
        assert payload in span["attrs"]["title"]  # the real text survives in the hover


def test_one_span_per_token_with_index_and_title() -> None:
    tokens = ["The", " cat", " cat", "\n", "?"]
    scores = [0.5, -2.0, 1.25, 0.0, 3.0]
    spans = _parse(render_token_heatmap(tokens, scores)).spans
    assert [s["attrs"]["data-index"] for s in spans] == ["0", "1", "2", "3", "4"]
    assert spans[1]["attrs"]["title"] == "index 1 · \u0020cat · -2"
    assert spans[2]["attrs"]["title"] == "index 2 ·  cat · +1.25"
    assert spans[1]["text"] == "·cat"  # leading space made visible
    assert spans[3]["text"] == "↵"
    assert spans[3]["attrs"]["title"] == "index 3 · \n · +0"


def test_selected_and_excluded_classes() -> None:
    tokens = list("abcdef")
    spans = _parse(render_token_heatmap(tokens, [3, -3, 1, -1, 0, 9], selected_positive=[0], selected_negative=[1],
                                        excluded=[5])).spans
    classes = [set(s["attrs"]["class"].split()) for s in spans]
    assert "grains-sel-pos" in classes[0] and "grains-sel-neg" not in classes[0]
    assert "grains-sel-neg" in classes[1] and "grains-sel-pos" not in classes[1]
    assert "grains-excluded" in classes[5]
    for c in classes[2:5]:
        assert not c & {"grains-sel-pos", "grains-sel-neg", "grains-excluded"}
    assert all("grains-tok" in c for c in classes)
    assert "border-color:#67001f" in spans[0]["attrs"]["style"]
    assert "border-color:#053061" in spans[1]["attrs"]["style"]
    assert "line-through" not in spans[5]["attrs"]["style"] and "dashed" in spans[5]["attrs"]["style"]


def test_background_colours_follow_sign_and_ignore_excluded_outliers() -> None:
    spans = _parse(render_token_heatmap(["<bos>", "a", "b", "c"], [100.0, 2.0, -2.0, 0.0], excluded=[0])).spans
    styles = [s["attrs"]["style"] for s in spans]
    # the excluded BOS score (100) does not set the scale: +2 and -2 get the full end colours
    assert f"background:{rgb_hex(DIVERGING_STOPS[-1][1])}" in styles[1]
    assert f"background:{rgb_hex(DIVERGING_STOPS[0][1])}" in styles[2]
    assert "background:#ffffff" in styles[3]


def test_legend_shows_symmetric_scale_and_caption() -> None:
    out = render_token_heatmap(["x", "y"], [0.25, -0.1])
    assert "+0.25" in out and "-0.25" in out
    assert "grains-legend" in out and "grains-caption" in out
    assert "grains-caption" not in render_token_heatmap(["x"], [1.0], caption=None)


def test_mismatch_and_bad_indices_raise() -> None:
    with pytest.raises(InputError):
        render_token_heatmap(["a", "b"], [1.0])
    with pytest.raises(InputError):
        render_token_heatmap(["a", "b"], [1.0, 2.0], selected_positive=[2])
    with pytest.raises(InputError):
        render_token_heatmap(["a", "b"], [1.0, 2.0], excluded=[-1])


def test_empty_and_nan() -> None:
    assert "No tokens" in render_token_heatmap([], [])
    spans = _parse(render_token_heatmap(["a", "b"], [float("nan"), 1.0])).spans
    assert "nan" in spans[0]["attrs"]["title"]
    assert "background:#a0a0a0" in spans[0]["attrs"]["style"]


def test_visible_token() -> None:
    assert visible_token(" the") == "·the"
    assert visible_token("  ") == "··"
    assert visible_token("a b") == "a b"
    assert visible_token("\t\r\n") == "⇥␍↵"
    assert visible_token("") == "∅"
    assert visible_token("x\u200b") == "x<U+200B>"


@pytest.mark.parametrize("fmt,expected", [("raw", "My first day at the new job"),
                                          ("qa", "Q: My first day at the new job\nA:")])
def test_heatmap_shows_the_exact_text_the_model_saw(fmt: str, expected: str) -> None:
    """The heatmap's tokens are the model input in the chosen format: raw is the prompt as typed (no hidden
    "Q: ...\\nA:"), qa the wrapper; the hover titles carry the real token text."""
    from grains.attribution import attribute
    from grains.models import load_model

    lm = load_model("tiny-random-llama")
    result = attribute(lm, "My first day at the new job", " was great", " was awful", steps=2, prompt_format=fmt)
    assert result.prompt_text == expected
    specials = [i for i, s in enumerate(result.special_mask) if s]
    spans = _parse(render_token_heatmap(result.tokens, result.scores, excluded=specials)).spans
    assert len(spans) == len(result.tokens)
    words = [s for s in spans if "grains-excluded" not in s["attrs"]["class"].split()]
    titles = [s["attrs"]["title"].split(" · ")[1] for s in words]  # "index i · token · score"
    assert "".join(titles) == expected
    shown = "".join(s["text"] for s in words).replace("·", " ").replace("↵", "\n")
    assert shown == expected
