"""Shipped and uploaded datasets as the panels need them: rows for evaluation, preference pairs for building."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from components.scheduling import current_limits
from grains.data import BUILTIN_DATASETS, load_any, load_builtin, truthfulqa_to_pairs
from grains.errors import InputError

DATASET_LABELS = {
    "truthfulqa": "TruthfulQA (multiple choice; pairs: best vs first incorrect answer)",
    "hhh_alignment": "HHH alignment (helpful / honest / harmless pairs)",
    "hallucination_pairs": "Hallucination pairs (A/B questions)",
    "sentiment_pairs": "Sentiment pairs (positive vs negative continuation, raw prompts)",
    "pope_style": "POPE-style yes/no object probes (VLM, with photos)",
}
UPLOAD = "uploaded file"
MAX_ROWS = 500


def dataset_choices(is_vlm: bool, with_upload: bool = True) -> list[tuple[str, str]]:
    """Dropdown choices; the image probes only for a VLM."""
    names = [n for n in BUILTIN_DATASETS if is_vlm or n != "pope_style"]
    out = [(DATASET_LABELS.get(n, n), n) for n in names]
    if with_upload:
        out.append(("Uploaded file (JSONL/CSV)", UPLOAD))
    return out


def as_pairs(kind: str, rows: list[Any]) -> list[Any]:
    """Preference pairs from any dataset kind (TruthfulQA: best vs first incorrect; probes: true vs other answer)."""
    if kind == "truthfulqa":
        return truthfulqa_to_pairs(rows)
    if kind == "probes":
        from grains.vlm.pope import probes_to_pairs

        return probes_to_pairs(rows)
    return list(rows)


def _window(limit: Any, offset: Any) -> tuple[int, int]:
    try:
        lim, off = int(limit), int(offset or 0)
    except (TypeError, ValueError):
        raise InputError("The number of rows and the first row must be whole numbers.") from None
    if not 1 <= lim <= MAX_ROWS:
        raise InputError(f"The number of rows must be from 1 to {MAX_ROWS}.")
    shared_cap = current_limits().max_rows
    if shared_cap is not None and lim > shared_cap:
        raise InputError(f"This shared server takes at most {shared_cap} rows per build or evaluation (the "
                         f"teacher's --max-rows); you asked for {lim}.")
    if off < 0:
        raise InputError("The first row must be 0 or more.")
    return lim, off


def load_rows(name: str | None, upload: str | None, limit: Any, offset: Any = 0) -> tuple[str, list[Any], str]:
    """(kind, rows, description) from a shipped dataset name or, when `name` is UPLOAD (or None), an uploaded file."""
    lim, off = _window(limit, offset)
    if name and name != UPLOAD:
        if name not in BUILTIN_DATASETS:
            raise InputError(f"Unknown dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}.")
        kind, rows = load_builtin(name, limit=lim, offset=off)
        return kind, rows, f"{name} rows {off}-{off + len(rows) - 1}"
    if not upload:
        raise InputError("Upload a JSONL or CSV file first (or choose a shipped dataset).")
    path = Path(upload)
    kind, rows = load_any(path, limit=lim, offset=off)
    return kind, rows, f"{path.name} rows {off}-{off + len(rows) - 1}"


def check_kind_fits(kind: str, is_vlm: bool) -> None:
    """Image probes need a vision-language model."""
    if kind == "probes" and not is_vlm:
        raise InputError("This dataset asks about photos (yes/no probes): load a vision-language model to use it.")


@lru_cache(maxsize=8)
def example_pairs(name: str, limit: int = 8) -> list[Any]:
    """The first preference pairs of a shipped dataset (for one-click examples)."""
    kind, rows = load_builtin(name, limit=limit)
    return as_pairs(kind, rows)


SHORT_NAMES = {"truthfulqa": "TruthfulQA", "hhh_alignment": "HHH", "hallucination_pairs": "Hallucination A/B",
               "sentiment_pairs": "Sentiment"}


def short_label(prefix: str, text: str, width: int = 52) -> str:
    """'prefix · first words of text…' on one line."""
    line = " ".join(text.replace("Q:", "").replace("A:", "").split())
    return f"{prefix} · {line if len(line) <= width else line[: width - 1].rstrip() + '…'}"


def text_examples() -> tuple[list[list[str]], list[str]]:
    """One-click text examples: ([prompt, chosen, rejected] rows, labels)."""
    picks = [("truthfulqa", 0), ("truthfulqa", 1), ("truthfulqa", 3), ("truthfulqa", 5), ("hhh_alignment", 0),
             ("hallucination_pairs", 0)]
    out, labels = [], []
    for name, i in picks:
        try:
            ex = example_pairs(name)[i]
        except Exception:  # noqa: BLE001 - a missing shipped file only costs an example
            continue
        out.append([ex.prompt, ex.chosen, ex.rejected])
        labels.append(short_label(SHORT_NAMES.get(name, name), ex.prompt))
    return out, labels


def image_examples() -> tuple[list[list[str]], list[str]]:
    """One-click VLM examples: ([question, chosen, rejected, photo path] rows, labels) from the POPE-style probes."""
    try:
        pairs = example_pairs("pope_style", 36)
    except Exception:  # noqa: BLE001
        return [], []
    seen: set[str] = set()
    out, labels = [], []
    for ex in pairs:
        key = f"{ex.image}:{ex.chosen}"
        if ex.image and key not in seen and len(out) < 6:
            seen.add(key)
            out.append([ex.prompt, ex.chosen, ex.rejected, ex.image])
            labels.append(short_label(Path(ex.image).stem, f"{ex.prompt} ({ex.chosen.strip()})", 44))
    return out, labels
