"""The datasets shipped in assets/data, by name."""

from __future__ import annotations

from pathlib import Path

from grains.data.records import DatasetKind
from grains.errors import InputError

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
BUILTIN_DATA_DIR = ASSETS_DIR / "data"
BUILTIN_DATASETS: dict[str, Path] = {
    "truthfulqa": BUILTIN_DATA_DIR / "truthfulqa.jsonl",
    "hhh_alignment": BUILTIN_DATA_DIR / "hhh_alignment.jsonl",
    "hallucination_pairs": BUILTIN_DATA_DIR / "hallucination_pairs.jsonl",
    "pope_style": BUILTIN_DATA_DIR / "pope_style.jsonl",
    "sentiment_pairs": BUILTIN_DATA_DIR / "sentiment_pairs.jsonl",
    "toy_scenes": BUILTIN_DATA_DIR / "toy_scenes" / "probes.jsonl",
}
"""The shipped datasets by name (provenance in assets/NOTICE.md), e.g. `load_any(BUILTIN_DATASETS["truthfulqa"])`.

Example:
    >>> kind, pairs = load_any(BUILTIN_DATASETS["sentiment_pairs"], limit=4)
"""


def load_builtin(name: str, limit: int | None = None, offset: int = 0) -> tuple[DatasetKind, list]:
    """Load one of BUILTIN_DATASETS by name.

    Args:
        name: a key of BUILTIN_DATASETS.
        limit: at most this many rows (default: all).
        offset: skip this many rows first.

    Returns:
        (kind, rows) as `load_any` gives them.

    Example:
        >>> kind, probes = load_builtin("pope_style", limit=4)
        >>> kind
        'probes'
    """
    from grains.data.loaders import load_any

    if name not in BUILTIN_DATASETS:
        raise InputError(f"Unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}.")
    return load_any(BUILTIN_DATASETS[name], limit=limit, offset=offset)
