"""Build the HTML API reference of the `grains` package from its docstrings (pdoc), into a folder.

    python scripts/build_api_docs.py                 # -> docs/api-reference/ (gitignored)
    python scripts/build_api_docs.py --out /tmp/api  # anywhere else

Docstrings are read in Google style (Args / Returns / Example sections). The library is imported, not run: no model
is loaded, nothing is downloaded, and Gradio is never imported (the library does not use it). Exits non-zero with
one line on stderr when the build fails.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "api-reference"


def build_api_docs(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write the API reference of `grains` into `out`.

    Args:
        out: the output folder (created if missing; pages already there are overwritten).

    Returns:
        The HTML pages written, sorted.

    Example:
        >>> pages = build_api_docs(Path("/tmp/api"))
        >>> Path("/tmp/api/grains.html") in pages
        True
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", show_source=False, footer_text="GrAInS Studio API reference")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import grains

    # grains.__init__ exports its names lazily (PEP 562); resolve them so the package page documents each one
    for name in grains._EXPORTS:
        setattr(grains, name, getattr(grains, name))
    # the package's __all__ names only those exports, so list every module explicitly for a page of its own
    modules = ["grains"] + sorted(m.name for m in pkgutil.walk_packages(grains.__path__, "grains.")
                                  if m.name != "grains.__main__")
    with warnings.catch_warnings():  # a package's spec already adds its submodules: the repeats are harmless
        warnings.filterwarnings("ignore", message="The module specification")
        pdoc.pdoc(*modules, output_directory=out)
    return sorted(out.rglob("*.html"))


def main(argv: list[str] | None = None) -> int:
    """Command line: build the reference into --out; print the number of pages and the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        pages = build_api_docs(args.out)
    except Exception as exc:  # one line, no traceback
        print(f"error: the API reference could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(pages)} pages to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
