"""`python -m grains SUBCOMMAND ...`: attribute, build, generate, eval, bench, presets.

With --json each command prints one JSON object on stdout. Bad input exits non-zero with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from grains.errors import GrainsError

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(_clean(data), ensure_ascii=False))
    else:
        print(text)


def _load(args: argparse.Namespace):
    from grains.models import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                      use_chat_template=args.chat_template, prompt_format=args.prompt_format)


def _image(args: argparse.Namespace):
    if not getattr(args, "image", None):
        return None
    from grains.images import load_image

    return load_image(args.image)


def _cmd_attribute(args: argparse.Namespace) -> int:
    from grains.attribution import attribute

    lm = _load(args)
    tolerance = None if args.tolerance == 0 else args.tolerance
    result = attribute(lm, args.prompt, args.chosen, args.rejected, image=_image(args), steps=args.steps,
                       target=args.target, baseline=args.baseline, points=args.points, tolerance=tolerance,
                       max_points=args.max_points)
    data: dict[str, Any] = {
        "tokens": result.tokens, "scores": result.scores, "f_input": result.f_input,
        "f_baseline": result.f_baseline, "delta": result.delta, "relative_delta": result.relative_delta,
        "seconds": result.seconds, "target": result.target, "steps": result.steps,
        "abs_relative_delta": result.abs_relative_delta, "converged": result.converged, "points": result.points,
        "tolerance": result.tolerance, "points_used": result.points_used, "gradient_evals": result.gradient_evals,
        "forward_evals": result.forward_evals, "panel_error": result.panel_error,
        "plus_tokens": result.plus_tokens, "plus_scores": result.plus_scores,
        "minus_tokens": result.minus_tokens, "minus_scores": result.minus_scores,
        "prompt_text": result.prompt_text, "prompt_format": lm.prompt_format,
    }
    if result.image_grid is not None:
        data["image_scores"] = result.image_grid
        data["image_token_count"] = result.extra.get("image_token_count")
        data["image_share"] = result.extra.get("image_share")
    ranked = sorted(range(len(result.tokens)), key=lambda i: -abs(result.scores[i]))[:10]
    lines = [f"f(x) - f(baseline) = {result.f_input - result.f_baseline:.4f}, delta = {result.delta:.4f} "
             f"({result.relative_delta:.1%} of the gap, {result.abs_relative_delta:.1%} of sum |phi|; "
             f"{'converged' if result.converged else 'NOT converged'}; {result.gradient_evals} gradient points, "
             f"{result.seconds:.2f} s)", "top tokens by |score|:"]
    lines += [f"  {i:4d} {result.tokens[i]!r:>20} {result.scores[i]:+.4f}" for i in ranked]
    if getattr(args, "vector", None):  # re-attribution under steering: the same example with the hook on
        from grains.compare_attributions import attribution_difference
        from grains.steering import Steering

        steering = Steering.create(lm, _vector(args, lm), args.layer, args.strength, args.normalize,
                                   args.allow_other_model)
        steered = attribute(lm, args.prompt, args.chosen, args.rejected, image=_image(args), steps=args.steps,
                            target=args.target, baseline=args.baseline, points=args.points, tolerance=tolerance,
                            max_points=args.max_points, steering=steering)
        diff = attribution_difference(result, steered)
        data["steered"] = {"scores": steered.scores, "f_input": steered.f_input, "f_baseline": steered.f_baseline,
                           "delta": steered.delta, "relative_delta": steered.relative_delta,
                           "converged": steered.converged, "seconds": steered.seconds,
                           "plus_scores": steered.plus_scores, "minus_scores": steered.minus_scores,
                           "steering": steering.to_dict()}
        data["difference"] = diff.to_dict()
        lines.append(f"steered ({steering.describe()}): f(x) = {steered.f_input:.4f} (change "
                     f"{diff.margin_change:+.4f}), {'converged' if steered.converged else 'NOT converged'}; "
                     "largest score changes (steered - unsteered):")
        lines += [f"  {t['index']:4d} {t['token']!r:>20} {t['difference']:+.4f}" for t in diff.top_changes(10)]
    _emit(args, data, "\n".join(lines))
    return 0


def _load_rows(path: str, limit: int | None, offset: int = 0) -> tuple[str, list[Any]]:
    from grains.data import BUILTIN_DATASETS, load_any

    resolved = str(BUILTIN_DATASETS.get(path, path))
    return load_any(resolved, limit=limit, offset=offset)


def _as_pairs(kind: str, rows: list[Any]) -> list[Any]:
    if kind == "truthfulqa":
        from grains.data import truthfulqa_to_pairs

        return truthfulqa_to_pairs(rows)
    if kind == "probes":
        from grains.vlm.pope import probes_to_pairs

        return probes_to_pairs(rows)
    return rows


def _cmd_build(args: argparse.Namespace) -> int:
    from grains.build import build_vector

    kind, rows = _load_rows(args.data, args.limit, args.offset)
    examples = _as_pairs(kind, rows)
    lm = _load(args)
    from grains.progress import ProgressBar

    progress = None if args.quiet else ProgressBar()  # stderr, so it shows with --json too
    result = build_vector(lm, examples, method=args.method, k=args.top_k, steps=args.steps, target=args.target,
                          position=args.position, content_only=not args.all_tokens, select=not args.no_select,
                          folds=args.folds, layers=args.layers, strengths=args.strengths, progress=progress,
                          search=args.search, normalize=args.normalize,
                          kl_budget=None if args.kl_budget <= 0 else args.kl_budget,
                          report_side_effects=args.side_effects)
    out = result.vector.save(args.out)
    summary = {**result.summary(), "out": str(out), "data_kind": kind}
    text = (f"saved {out} ({summary['method']}, {summary['n_examples']} examples): suggested layer "
            f"{summary['layer']}, strength {summary['strength']:g}. {summary['note']}")
    if result.side_effects is not None:
        text += f"\nside effects: {result.side_effects.reading()}"
    for warning in summary["warnings"]:
        text += f"\nwarning: {warning}"
    _emit(args, summary, text)
    return 0


def _vector(args: argparse.Namespace, lm: Any):
    if not args.vector:
        return None
    from grains.vectors import load_vector

    vector = load_vector(args.vector)
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers,
                      allow_other_model=getattr(args, "allow_other_model", False))
    return vector


def _cmd_generate(args: argparse.Namespace) -> int:
    from grains.generation import GenerationSettings, generate_pair

    lm = _load(args)
    vector = _vector(args, lm)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                                  temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                  stop=tuple(s.replace("\\n", "\n") for s in args.stop or ()))
    start = time.perf_counter()
    steering = None
    if vector is not None:
        from grains.steering import Steering

        steering = Steering.create(lm, vector, args.layer, args.strength, args.normalize, args.allow_other_model)
    pair = generate_pair(lm, args.prompt, steering, settings=settings, image=_image(args))
    data = {"unsteered": pair.unsteered, "steered": pair.steered, "seconds": time.perf_counter() - start,
            "prompt_text": pair.prompt_text, "prompt_format": lm.prompt_format, "sampled": bool(args.sample),
            "seed": args.seed}
    if steering is not None:
        data["layer"] = steering.layers[0] if len(steering.layers) == 1 else list(steering.layers)
        data["strength"] = steering.strength
        data["steering"] = steering.to_dict()
    _emit(args, data, f"--- unsteered ---\n{pair.unsteered}\n--- steered ---\n{pair.steered}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from grains.evaluation import evaluate

    kind, rows = _load_rows(args.data, args.limit, args.offset)
    lm = _load(args)
    vector = _vector(args, lm)
    result = evaluate(lm, rows, kind, vector, args.layer, args.strength, per_item=args.per_item,
                      length_normalize=args.length_normalize, normalize=args.normalize,
                      side_effects=args.side_effects, allow_other_model=args.allow_other_model,
                      first_row=max(0, args.offset))
    text = json.dumps(_clean({k: v for k, v in result.items() if k != "items"}), indent=2)
    _emit(args, result, text)
    return 0


def _cmd_check_image(args: argparse.Namespace) -> int:
    from grains.errors import InputError
    from grains.images import load_image
    from grains.vlm.check import resolve_objects, steer_and_recheck

    if args.absent and args.setting:
        raise InputError("Give --absent or --setting, not both.")
    if args.vector and args.build_from:
        raise InputError("Give --vector or --build-from, not both.")
    resolve_objects(args.present, args.absent, args.setting, args.n_absent, args.seed)  # cheap checks first
    image = load_image(args.image)
    lm = _load(args)
    progress = None if args.json or args.quiet else (lambda f, m: print(f"[{f:5.0%}] {m}", file=sys.stderr))
    if args.build_from:
        report = steer_and_recheck(lm, image, args.present, args.absent, args.setting,
                                   source="user" if args.build_from == "probes" else "shipped", steps=args.steps,
                                   layer=args.layer, strength=args.strength, n_absent=args.n_absent, seed=args.seed,
                                   progress=progress)
    else:
        from grains.vlm.check import check_image

        report = check_image(lm, image, args.present, args.absent, args.setting, _vector(args, lm), args.layer,
                             args.strength, n_absent=args.n_absent, seed=args.seed, progress=progress)
    report.image["name"] = Path(args.image).name
    data = report.to_dict()
    _emit(args, data, str(report))
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from grains.presets import PRESETS, is_installed

    data = {name: {"group": p.group, "description": p.description, "installed": is_installed(name),
                   "random_weights": p.random_weights, "vlm": p.vlm, "install": p.install_hint}
            for name, p in PRESETS.items()}
    text = "\n".join(f"{n:28s} {d['group']:9s} {'installed' if d['installed'] else 'not installed':14s} "
                     f"{d['description']}" for n, d in data.items())
    _emit(args, {"presets": data}, text)
    return 0


def _bench_harness() -> Any:
    """The benchmark harness (benchmarks/harness.py of the repository checkout this package runs from), or None
    when it is not there (an installed wheel ships the library only)."""
    import importlib

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "harness.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("benchmarks.harness")


def _cmd_bench(args: argparse.Namespace) -> int:
    from grains.errors import InputError

    harness = _bench_harness()
    if harness is None:
        raise InputError("`grains bench` needs the repository checkout's benchmarks/ folder, which an installed "
                         "package does not ship: clone the repository and run `python -m grains bench` from it.")
    return harness.bench_command(args)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of whole numbers") from exc


def _float_list(value: str) -> list[float]:
    try:
        numbers = [float(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of numbers") from exc
    if not numbers or any(not math.isfinite(n) for n in numbers):
        raise argparse.ArgumentTypeError(f"{value!r} must list finite numbers")
    return numbers


def _common(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        p.add_argument("--model", default=None, help="preset name, hub id, local dir or .gguf file "
                                                     "(default: gemma-3-270m)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto")
        p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto")
        p.add_argument("--trust-remote-code", action="store_true", help="allow code from the model repo (off)")
        p.add_argument("--prompt-format", choices=["raw", "qa", "chat"], default=None,
                       help="raw: the text as written; qa: wrap in 'Q: ...\\nA:'; chat: the model's chat template "
                            "(default: chat when the model has a template, else raw)")
        p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None,
                       help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _normalize_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                   help="restore each token's hidden-state norm after adding the vector (default: on)")


def _other_model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-other-model", action="store_true",
                   help="accept a vector built for another model of the same shape")


class _Parser(argparse.ArgumentParser):
    """argparse's own rejections follow the one-line error contract too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m grains", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("attribute", help="contrastive IG over the prompt tokens (and image patches)")
    _common(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--chosen", required=True)
    p.add_argument("--rejected", required=True)
    p.add_argument("--image", default=None, help="image file for a VLM")
    p.add_argument("--steps", type=_positive_int, default=16, help="points of the starting integration rule")
    p.add_argument("--target", choices=["sequence", "last"], default="sequence",
                   help="whole-response log-prob (default) or the paper's last-token variant")
    p.add_argument("--baseline", choices=["zero", "pad"], default="zero")
    p.add_argument("--points", choices=["graded", "gauss-legendre", "midpoint"], default="graded",
                   help="graded: log-spaced nodes near alpha=0 joined to Gauss-Legendre above (default)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="add points until |delta| <= tolerance * |f(x)-f(x')| (or tolerance/5 * sum |phi|); 0: off")
    p.add_argument("--max-points", type=_positive_int, default=None,
                   help="cap on gradient points in tolerance mode (default 4 x steps)")
    p.add_argument("--vector", default=None,
                   help="also attribute the steered model (the vector on during IG): adds 'steered' and 'difference'")
    p.add_argument("--layer", type=int, default=None, help="with --vector (default: the vector's suggestion)")
    p.add_argument("--strength", type=float, default=None, help="with --vector (default: the vector's suggestion)")
    _normalize_flag(p)
    _other_model_flag(p)
    p.set_defaults(func=_cmd_attribute)

    p = sub.add_parser("build", help="build a steering vector from a dataset")
    _common(p)
    p.add_argument("--data", required=True, help="JSONL/CSV file or a built-in dataset name")
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--top-k", type=_positive_int, default=5)
    p.add_argument("--method", choices=["grains", "pca", "mean", "caa"], default="grains")
    p.add_argument("--steps", type=_positive_int, default=16)
    p.add_argument("--target", choices=["sequence", "last"], default="sequence")
    p.add_argument("--position", choices=["answer", "prompt"], default="answer")
    p.add_argument("--all-tokens", action="store_true", help="let top-k pick template/special-free tokens too")
    p.add_argument("--folds", type=_positive_int, default=3)
    p.add_argument("--no-select", action="store_true", help="skip the cross-validated layer/strength choice")
    p.add_argument("--layers", type=_int_list, default=None, help="candidate layers for the choice, e.g. 10,12,14")
    p.add_argument("--strengths", type=_float_list, default=None, help="candidate strengths, e.g. 0.25,0.5,1")
    p.add_argument("--search", choices=["coarse", "grid"], default="coarse",
                   help="coarse: every layer at the middle strength, then every strength at the 2 best layers; "
                        "grid: every layer x strength")
    p.add_argument("--kl-budget", type=float, default=0.5,
                   help="choose only cells whose mean KL on neutral prompts is at most this many nats (0: no budget)")
    p.add_argument("--side-effects", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the chosen setting's side effects (KL, repetition) at the end")
    _normalize_flag(p)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("generate", help="unsteered and steered continuations side by side")
    _common(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--image", default=None)
    p.add_argument("--vector", default=None)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--max-new-tokens", type=_positive_int, default=40)
    p.add_argument("--sample", action="store_true")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop sequence (repeatable; \\n is a line break): each row is cut before it")
    _normalize_flag(p)
    _other_model_flag(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("eval", help="accuracy with and without a vector, with significance")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--vector", default=None)
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--per-item", action="store_true")
    p.add_argument("--length-normalize", action="store_true")
    p.add_argument("--side-effects", action=argparse.BooleanOptionalAction, default=True,
                   help="with a vector, also report KL on neutral prompts and repetition of continuations")
    _normalize_flag(p)
    _other_model_flag(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("check-image", help="POPE-style hallucination check of one photo (VLM), optionally steered")
    _common(p)
    p.add_argument("--image", required=True, help="the photo")
    p.add_argument("--present", default=None, help="objects in the photo, comma-separated")
    p.add_argument("--absent", default=None, help="objects not in the photo, comma-separated")
    p.add_argument("--setting", choices=["random", "popular", "adversarial"], default=None,
                   help="propose the absent objects from the shipped vocabulary instead (default: random)")
    p.add_argument("--n-absent", type=_positive_int, default=None, help="how many to propose (default: as present)")
    p.add_argument("--vector", default=None, help="steer with this vector and compare")
    p.add_argument("--build-from", choices=["shipped", "probes"], default=None,
                   help="build a vector from the shipped probes or from half of this photo's probes, then re-check "
                        "on probes it never saw")
    p.add_argument("--steps", type=_positive_int, default=8, help="IG steps when building")
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_check_image)

    p = sub.add_parser("presets", help="list model presets")
    _common(p, with_model=False)
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("bench", help="speed and memory benchmarks against the reference way")
    _common(p)
    harness = _bench_harness()
    if harness is not None:
        harness.add_bench_arguments(p)
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
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not (getattr(args, "func", None) is _cmd_bench and _bench_harness() is None):
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
