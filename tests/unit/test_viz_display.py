"""grains.viz.display: the Renderable mixin (to_json to a file, _repr_html_, show) and reading JSON sources."""

import json

from grains.viz.display import Renderable, in_notebook, read_json_source


class _Result(Renderable):
    def to_dict(self):
        return {"gain": float("nan"), "label": "best of 3"}

    def to_html(self):
        return "<b>best of 3</b>"

    def to_text(self):
        return "best of 3 (text)"


def test_to_json_writes_strict_json_and_show_prints_text_outside_a_notebook(tmp_path, capsys):
    result = _Result()
    text = result.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"gain": None, "label": "best of 3"}
    assert read_json_source(tmp_path / "r.json") == text == read_json_source(text)
    assert result._repr_html_() == "<b>best of 3</b>"
    assert not in_notebook()
    result.show()
    assert capsys.readouterr().out.strip() == "best of 3 (text)"
