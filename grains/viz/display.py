"""How a result shows itself: HTML in a notebook (`_repr_html_`, `show()`), plain text in a terminal, JSON to save.

`Renderable` is the mixin behind AttributionResult, BuildResult, EvaluationReport and SweepResult; each supplies
`to_dict()`, `to_html()` and `to_text()`, and gets `to_json()`, `_repr_html_()` and `show()` from here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from grains.serialize import dumps


def in_notebook() -> bool:
    """Whether code runs in a Jupyter kernel (where HTML can be displayed)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


class Renderable:
    """Mixin: JSON, notebook HTML and `show()` from a result's `to_dict()`, `to_html()` and `to_text()`."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def to_html(self) -> str:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def to_text(self) -> str:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def to_json(self, path: str | Path | None = None, indent: int | None = None) -> str:
        """The result as JSON (NaN/inf as null), through the one JSON path the CLI and the app use.

        Args:
            path: also write the text to this file.
            indent: as in `json.dumps`.

        Returns:
            The JSON text.

        Example:
            >>> text = result.to_json("attribution.json")
        """
        text = dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _repr_html_(self) -> str:
        """What a notebook displays: the result's HTML view."""
        return self.to_html()

    def show(self) -> None:
        """Display the result: its HTML view in a notebook, a plain-text summary in a terminal.

        Example:
            >>> grains.attribute(lm, prompt, chosen, rejected).show()
        """
        if in_notebook():
            from IPython.display import HTML, display

            display(HTML(self.to_html()))
        else:
            print(self.to_text())


def read_json_source(source: str | Path) -> str:
    """JSON text from a JSON string or from a file path (for the results' `from_json`)."""
    text = str(source)
    if text.lstrip().startswith(("{", "[")):
        return text
    return Path(source).read_text(encoding="utf-8")
