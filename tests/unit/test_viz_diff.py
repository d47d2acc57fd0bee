"""grains.viz.diff: word-level diff of two texts as two escaped HTML columns."""

from grains.viz.diff import render_diff


def test_diff_marks_changed_words_only() -> None:
    left, right = render_diff("the cat sat on the mat.", "the dog sat on the mat!")
    assert '<del class="grains-del"' in left and ">cat</del>" in left and ">.</del>" in left
    assert '<ins class="grains-ins"' in right and ">dog</ins>" in right and ">!</ins>" in right
    assert "<ins" not in left and "<del" not in right
    assert ">the</" not in left and ">sat</" not in right  # unchanged words are not marked


def test_diff_escapes_and_handles_identical_and_empty() -> None:
    left, right = render_diff("hi <script>alert(1)</script>", "hi <img src=x onerror=alert(1)>")
    assert "<script" not in left and "<img" not in right
    assert "&lt;" in left and "&lt;" in right and "script" in left and "onerror" in right
    same_l, same_r = render_diff("same text", "same text")
    assert "<del" not in same_l and "<ins" not in same_r and "same text" in same_l
    empty_l, full_r = render_diff("", "new words")
    assert "<del" not in empty_l and "new" in full_r and "<ins" in full_r
