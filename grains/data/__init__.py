"""Dataset loading and validation: TruthfulQA questions, preference pairs, POPE-style yes/no probes.

Files are JSONL (one JSON object per line) or CSV with a header row. Only JSON and CSV are parsed, never pickle.
Every problem with a file or a row raises `DataError` naming the file and the 1-based line number.

Layout: `records` (the row dataclasses), `files` (reading JSONL/CSV with limits), `rows` (field checks and row
parsers), `loaders` (one loader per format, detection, load_any), `convert` (TruthfulQA to pairs), `builtin` (the
shipped datasets).
"""

from __future__ import annotations

from grains.data.builtin import ASSETS_DIR, BUILTIN_DATA_DIR, BUILTIN_DATASETS, load_builtin
from grains.data.convert import truthfulqa_to_pairs
from grains.data.files import MAX_DATASET_BYTES, iter_jsonl, read_text
from grains.data.loaders import detect_format, load_any, load_pairs, load_probes, load_truthfulqa
from grains.data.records import (
    PAIR_KEYS,
    PROBE_KEYS,
    TRUTHFULQA_KEYS,
    DatasetKind,
    MCQuestion,
    PreferenceExample,
    YesNoProbe,
)

__all__ = ["ASSETS_DIR", "BUILTIN_DATASETS", "BUILTIN_DATA_DIR", "MAX_DATASET_BYTES", "PAIR_KEYS", "PROBE_KEYS",
           "TRUTHFULQA_KEYS", "DatasetKind", "MCQuestion", "PreferenceExample", "YesNoProbe", "detect_format",
           "iter_jsonl", "load_any", "load_builtin", "load_pairs", "load_probes", "load_truthfulqa", "read_text",
           "truthfulqa_to_pairs"]
