"""`python -m grains SUBCOMMAND ...`: attribute, build, generate, eval, check-image, export, import, bench,
presets, scenes.

With --json each command prints one JSON object on stdout. Bad input exits non-zero with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from grains.cli_args import add_command_arguments
from grains.cli_args import common_arguments as _common  # the bench subparser's lines call it by this name
from grains.cli_commands import (
    cmd_attribute,
    cmd_build,
    cmd_check_image,
    cmd_eval,
    cmd_generate,
    cmd_presets,
    cmd_scenes,
)
from grains.cli_serving import cmd_export, cmd_import, export_arguments, import_arguments
from grains.errors import GrainsError

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


def _checkout_module(name: str) -> Any:
    """`benchmarks.<name>` from the repository checkout this package runs from, or None when the checkout's
    benchmarks/ folder is not there (an installed wheel ships the library only)."""
    import importlib

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / f"{name}.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(f"benchmarks.{name}")


def _bench_harness() -> Any:
    """The benchmark harness (benchmarks/harness.py: imports torch and the library), or None without the checkout."""
    return _checkout_module("harness")


def _bench_arguments() -> Any:
    """The bench options (benchmarks/arguments.py: argparse only, cheap at parser build), or None without the
    checkout."""
    return _checkout_module("arguments")


def _cmd_bench(args: argparse.Namespace) -> int:
    from grains.errors import InputError

    harness = _bench_harness()
    if harness is None:
        raise InputError("`grains bench` needs the repository checkout's benchmarks/ folder, which an installed "
                         "package does not ship: clone the repository and run `python -m grains bench` from it.")
    return harness.bench_command(args)


class _Parser(argparse.ArgumentParser):
    """argparse's own rejections follow the one-line error contract too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m grains`: one subcommand per job.

    Returns:
        The parser; its rejections print one line and exit 2.

    Example:
        >>> build_parser().parse_args(["presets", "--json"]).command
        'presets'
    """
    parser = _Parser(prog="python -m grains", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("attribute", help="contrastive IG over the prompt tokens (and image patches)")
    add_command_arguments("attribute", p)
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("build", help="build a steering vector from a dataset")
    add_command_arguments("build", p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("generate", help="unsteered and steered continuations side by side")
    add_command_arguments("generate", p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="accuracy with and without a vector, with significance")
    add_command_arguments("eval", p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("check-image", help="POPE-style hallucination check of one photo (VLM), optionally steered")
    add_command_arguments("check-image", p)
    p.set_defaults(func=cmd_check_image)

    p = sub.add_parser("export", help="a vector as a GGUF control vector for llama.cpp / EasySteer, with commands")
    export_arguments(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="a GGUF control vector (llama.cpp, repeng, EasySteer) as a Studio vector")
    import_arguments(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("presets", help="list model presets")
    add_command_arguments("presets", p)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("scenes", help="generated scenes with known contents and their yes/no probes (toy VLM)")
    add_command_arguments("scenes", p)
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("bench", help="speed and memory benchmarks against the reference way")
    _common(p)
    arguments = _bench_arguments()
    if arguments is not None:
        arguments.add_bench_arguments(p)
    p.set_defaults(func=_cmd_bench)
    return parser


def _quiet_libraries() -> None:
    """Progress bars and warnings from the libraries would break the one-line error contract on stderr."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _precheck(args: argparse.Namespace) -> None:
    """Cheap input checks before a model is loaded."""
    from grains.errors import InputError
    from grains.prompts import check_text

    if getattr(args, "prompt", None) is not None:
        check_text(args.prompt, "prompt")
    if getattr(args, "chosen", None) is not None:
        check_text(args.chosen, "chosen answer")
        check_text(args.rejected, "rejected answer")
        if args.chosen.strip() == args.rejected.strip():
            raise InputError("The chosen and rejected answers are identical: attribution needs two different answers.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: parse, check the cheap things first, run it, turn errors into one line on stderr.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code: 0, 2 for bad input (a GrainsError), 1 for an unexpected error, 130 when interrupted.

    Example:
        >>> main(["presets", "--json"])
        0
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not (getattr(args, "func", None) is _cmd_bench and _bench_arguments() is None):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # without the harness, bench says what is missing
    if getattr(args, "image", None) and not Path(args.image).exists():
        print(f"error: no image file at {args.image}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        _quiet_libraries()
        _precheck(args)
        return int(args.func(args) or 0)
    except GrainsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # no traceback for users unless asked
        if args.debug or os.environ.get("GRAINS_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
