"""The CLI's arguments: argparse types (whole numbers, comma lists), the flags every command shares, and one function
per command that adds its arguments to a subparser."""

from __future__ import annotations

import argparse
import math


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1.

    Args:
        value: the text typed.

    Returns:
        The number; anything else raises argparse.ArgumentTypeError (one line, exit 2).

    Example:
        >>> positive_int("16")
        16
    """
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def int_list(value: str) -> list[int]:
    """argparse type: comma-separated whole numbers.

    Args:
        value: e.g. "10,12,14".

    Returns:
        The list of numbers.

    Example:
        >>> int_list("10,12,14")
        [10, 12, 14]
    """
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of whole numbers") from exc


def float_list(value: str) -> list[float]:
    """argparse type: comma-separated finite numbers (at least one).

    Args:
        value: e.g. "0.25,0.5".

    Returns:
        The list; text that is not a number, NaN, an infinity or an empty list is refused (exit 2, one line).

    Example:
        >>> float_list("0.25,0.5")
        [0.25, 0.5]
    """
    try:
        numbers = [float(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of numbers") from exc
    if not numbers or any(not math.isfinite(n) for n in numbers):
        raise argparse.ArgumentTypeError(f"{value!r} must list finite numbers")
    return numbers


def common_arguments(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    """Add the flags every command shares: --model, --device, --dtype, --trust-remote-code, --prompt-format (when
    `with_model`) and --json.

    Args:
        p: a subparser.
        with_model: whether the command loads a model.

    Returns:
        None (the flags are added to `p`).

    Example:
        >>> common_arguments(sub.add_parser("presets"), with_model=False)
    """
    if with_model:
        p.add_argument("--model", default=None, help="preset name, hub id, local dir or .gguf file "
                                                     "(default: gemma-3-270m)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto")
        p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto")
        p.add_argument("--trust-remote-code", action="store_true", help="allow code from the model repo (off)")
        p.add_argument("--strict-fp32", action="store_true",
                       help="keep every fp32 product strict (default: oneDNN's faster route on a CPU where a check "
                            "shows it gives the same numbers)")
        p.add_argument("--prompt-format", choices=["raw", "qa", "chat"], default=None,
                       help="raw: the text as written; qa: wrap in 'Q: ...\\nA:'; chat: the model's chat template "
                            "(default: chat when the model has a template, else raw)")
        p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None,
                       help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def normalize_flag(p: argparse.ArgumentParser) -> None:
    """Add --normalize / --no-normalize (restore each token's norm after steering; on by default).

    Args:
        p: a subparser that steers.

    Returns:
        None.

    Example:
        >>> normalize_flag(parser)
    """
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="restore each token's hidden-state norm after adding the vector (default: on)")


def other_model_flag(p: argparse.ArgumentParser) -> None:
    """Add --allow-other-model (accept a vector built for another model of the same shape).

    Args:
        p: a subparser that loads a vector.

    Returns:
        None.

    Example:
        >>> other_model_flag(parser)
    """
    p.add_argument("--allow-other-model", action="store_true",
                   help="accept a vector built for another model of the same shape")


def _attribute_arguments(p: argparse.ArgumentParser) -> None:
    """--prompt, --chosen, --rejected, the integration rule and tolerance, an optional --vector."""
    common_arguments(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--chosen", required=True)
    p.add_argument("--rejected", required=True)
    p.add_argument("--image", default=None, help="image file for a VLM")
    p.add_argument("--steps", type=positive_int, default=16, help="points of the starting integration rule")
    p.add_argument("--target", choices=["sequence", "last"], default="sequence",
                   help="whole-response log-prob (default) or the paper's last-token variant")
    p.add_argument("--baseline", choices=["zero", "pad"], default="zero")
    p.add_argument("--points", choices=["graded", "gauss-legendre", "midpoint"], default="graded",
                   help="graded: log-spaced nodes near alpha=0 joined to Gauss-Legendre above (default)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="add points until |delta| <= tolerance * |f(x)-f(x')| (or tolerance/5 * sum |phi|); 0: off")
    p.add_argument("--max-points", type=positive_int, default=None,
                   help="cap on gradient points in tolerance mode (default 8 x steps)")
    p.add_argument("--vector", default=None,
                   help="also attribute the steered model (the vector on during IG): adds 'steered' and 'difference'")
    p.add_argument("--layer", type=int, default=None, help="with --vector (default: the vector's suggestion)")
    p.add_argument("--strength", type=float, default=None, help="with --vector (default: the vector's suggestion)")
    normalize_flag(p)
    other_model_flag(p)


def _build_arguments(p: argparse.ArgumentParser) -> None:
    """--data, --out, the method, top-k, IG steps and the cross-validated selection."""
    common_arguments(p)
    p.add_argument("--data", required=True, help="JSONL/CSV file or a built-in dataset name")
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--method", choices=["grains", "pca", "mean", "caa"], default="grains",
                   help="grains: mean of the ablation deltas (default; 'mean' is the same method); pca; caa")
    p.add_argument("--steps", type=positive_int, default=16)
    p.add_argument("--target", choices=["sequence", "last"], default="sequence")
    p.add_argument("--position", choices=["answer", "prompt"], default="answer")
    p.add_argument("--all-tokens", action="store_true", help="let top-k pick template/special-free tokens too")
    p.add_argument("--folds", type=positive_int, default=3)
    p.add_argument("--no-select", action="store_true", help="skip the cross-validated layer/strength choice")
    p.add_argument("--layers", type=int_list, default=None, help="candidate layers for the choice, e.g. 10,12,14")
    p.add_argument("--strengths", type=float_list, default=None, help="candidate strengths, e.g. 0.25,0.5,1")
    p.add_argument("--search", choices=["coarse", "grid"], default="coarse",
                   help="coarse: every layer at the middle strength, then every strength at the 2 best layers; "
                        "grid: every layer x strength")
    p.add_argument("--kl-budget", type=float, default=0.5,
                   help="choose only cells whose mean KL on neutral prompts is at most this many nats (0: no budget)")
    p.add_argument("--side-effects", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the chosen setting's side effects (KL, repetition) at the end")
    normalize_flag(p)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="output .safetensors path")


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    """--prompt, an optional --vector with --layer and --strength, the decoding settings."""
    common_arguments(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--image", default=None)
    p.add_argument("--vector", default=None)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--max-new-tokens", type=positive_int, default=40)
    p.add_argument("--sample", action="store_true")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop sequence (repeatable; \\n is a line break): each row is cut before it")
    normalize_flag(p)
    other_model_flag(p)


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    """--data, an optional --vector, the row window and the side-effect measures."""
    common_arguments(p)
    p.add_argument("--data", required=True)
    p.add_argument("--vector", default=None)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--per-item", action="store_true")
    p.add_argument("--length-normalize", action="store_true")
    p.add_argument("--side-effects", action=argparse.BooleanOptionalAction, default=True,
                   help="with a vector, also report KL on neutral prompts and repetition of continuations")
    normalize_flag(p)
    other_model_flag(p)


def _check_image_arguments(p: argparse.ArgumentParser) -> None:
    """--image, the object lists or a --setting, --vector or --build-from."""
    common_arguments(p)
    p.add_argument("--image", required=True, help="the photo")
    p.add_argument("--present", default=None, help="objects in the photo, comma-separated")
    p.add_argument("--absent", default=None, help="objects not in the photo, comma-separated")
    p.add_argument("--setting", choices=["random", "popular", "adversarial"], default=None,
                   help="propose the absent objects from the shipped vocabulary instead (default: random)")
    p.add_argument("--n-absent", type=positive_int, default=None, help="how many to propose (default: as present)")
    p.add_argument("--vector", default=None, help="steer with this vector and compare")
    p.add_argument("--build-from", choices=["shipped", "probes"], default=None,
                   help="build a vector from the shipped probes or from half of this photo's probes, then re-check "
                        "on probes it never saw")
    p.add_argument("--steps", type=positive_int, default=8, help="IG steps when building")
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def _scenes_arguments(p: argparse.ArgumentParser) -> None:
    """--seed, --n, --out and the scene distribution (no model is loaded)."""
    common_arguments(p, with_model=False)
    p.add_argument("--seed", type=int, default=1_000_000_000,
                   help="first scene seed (default 1000000000: held out from the toy models' training)")
    p.add_argument("--n", type=positive_int, default=20, help="how many scenes")
    p.add_argument("--out", required=True, help="folder for images/, masks/, scenes.jsonl and probes.jsonl")
    p.add_argument("--distribution", choices=["unbiased", "biased"], default="unbiased",
                   help="unbiased: kinds drawn independently (default); biased: the planted co-occurrence rule")


def _presets_arguments(p: argparse.ArgumentParser) -> None:
    """only --json (no model is loaded)."""
    common_arguments(p, with_model=False)


COMMAND_ARGUMENTS = {"attribute": _attribute_arguments, "build": _build_arguments, "generate": _generate_arguments,
                     "eval": _eval_arguments, "check-image": _check_image_arguments,
                     "presets": _presets_arguments, "scenes": _scenes_arguments}


def add_command_arguments(command: str, p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one command's arguments to its subparser (the `bench` command adds its own).

    Args:
        command: "attribute", "build", "generate", "eval", "check-image", "presets" or "scenes".
        p: the command's subparser.

    Returns:
        `p`, with the shared flags (common_arguments) and the command's own.

    Example:
        >>> p = add_command_arguments("build", argparse.ArgumentParser())
        >>> p.parse_args(["--data", "truthfulqa", "--out", "v.safetensors"]).method
        'grains'
    """
    COMMAND_ARGUMENTS[command](p)
    return p
