"""The `bench` subcommand's options, in a module light enough for the CLI to import while it builds its parser
(the harness itself imports torch and the whole library)."""

from __future__ import annotations

import argparse


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to a parser (the CLI's `bench` subcommand); --model/--json only if not there yet."""
    known = set(parser._option_string_actions)  # noqa: SLF001 - argparse has no public lookup
    if "--model" not in known:
        parser.add_argument("--model", default=None, help="preset, hub id, local dir or .gguf (default gemma-3-270m)")
    if "--json" not in known:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="fewer points and repeats (~2 minutes on 2 CPU cores)")
    parser.add_argument("--steps", type=int, default=None, help="IG points for the speed comparison "
                                                                "(default 20, quick 8)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="force the engine's IG chunk size in the comparison (default: chosen from free memory)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: one per core)")
    parser.add_argument("--out", default=None, help="also write the JSON result to this file")
