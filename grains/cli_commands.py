"""The CLI's commands: each `cmd_*` takes the parsed arguments, runs one library call and prints its result (text, or
one JSON object with --json through grains.serialize). They return the exit code; errors propagate to grains.cli.main,
which turns them into one line on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grains.serialize import dumps
from grains.viz.formatting import phase_times

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.vectors import SteeringVector


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print the result: one JSON object with --json, else the text.

    Args:
        args: the parsed arguments (reads `args.json`).
        data: the JSON-safe result.
        text: the human-readable result.

    Returns:
        None.

    Example:
        >>> emit(argparse.Namespace(json=True), {"n": 1}, "n = 1")
        {"n": 1}
    """
    if args.json:
        print(dumps(data))
    else:
        print(text)


def load_lm(args: argparse.Namespace) -> LoadedModel:
    """The model named by --model, with --device, --dtype, --trust-remote-code and --prompt-format.

    Args:
        args: parsed arguments of a command that loads a model.

    Returns:
        The LoadedModel.

    Example:
        >>> lm = load_lm(build_parser().parse_args(["generate", "--model", "tiny-random-llama", "--prompt", "Hi"]))
    """
    from grains.matmul_precision import set_strict_fp32
    from grains.models import load_model

    if getattr(args, "strict_fp32", False):
        set_strict_fp32()
    return load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                      use_chat_template=args.chat_template, prompt_format=args.prompt_format)


def image_arg(args: argparse.Namespace) -> Any:
    """The decoded --image, or None when the command got none.

    Args:
        args: parsed arguments.

    Returns:
        A PIL image or None.

    Example:
        >>> image_arg(argparse.Namespace(image=None)) is None
        True
    """
    if not getattr(args, "image", None):
        return None
    from grains.images import load_image

    return load_image(args.image)


def cmd_attribute(args: argparse.Namespace) -> int:
    """`attribute`: contrastive IG over the prompt; with --vector also the steered model and the difference.

    Args:
        args: parsed `attribute` arguments.

    Returns:
        0 after printing the scores (top tokens, delta, convergence).

    Example:
        >>> cmd_attribute(build_parser().parse_args(["attribute", "--prompt", "Hi", "--chosen", " a",
        ...                                          "--rejected", " b"]))
    """
    from grains.attribution import attribute

    lm = load_lm(args)
    tolerance = None if args.tolerance == 0 else args.tolerance
    result = attribute(lm, args.prompt, args.chosen, args.rejected, image=image_arg(args), steps=args.steps,
                       target=args.target, baseline=args.baseline, points=args.points, tolerance=tolerance,
                       max_points=args.max_points)
    data: dict[str, Any] = {
        "tokens": result.tokens, "scores": result.scores, "f_input": result.f_input,
        "f_baseline": result.f_baseline, "delta": result.delta, "relative_delta": result.relative_delta,
        "seconds": result.seconds, "target": result.target, "steps": result.steps,
        "abs_relative_delta": result.abs_relative_delta, "converged": result.converged,
        "convergence": result.convergence, "points": result.points,
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
             f"{result.convergence_reading}; {result.gradient_evals} gradient points, "
             f"{result.seconds:.2f} s)", "top tokens by |score|:"]
    lines += [f"  {i:4d} {result.tokens[i]!r:>20} {result.scores[i]:+.4f}" for i in ranked]
    if getattr(args, "vector", None):  # re-attribution under steering: the same example with the hook on
        from grains.compare_attributions import attribution_difference
        from grains.steering import Steering

        steering = Steering.create(lm, vector_arg(args, lm), args.layer, args.strength, args.normalize,
                                   args.allow_other_model)
        steered = attribute(lm, args.prompt, args.chosen, args.rejected, image=image_arg(args), steps=args.steps,
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
    emit(args, data, "\n".join(lines))
    return 0


def load_rows(path: str, limit: int | None, offset: int = 0) -> tuple[str, list[Any]]:
    """Rows of a data file or of a built-in dataset named by --data.

    Args:
        path: a file path or a key of BUILTIN_DATASETS.
        limit: at most this many rows.
        offset: rows to skip.

    Returns:
        (kind, rows) as grains.data.load_any gives them.

    Example:
        >>> kind, rows = load_rows("truthfulqa", 4)
        >>> kind
        'truthfulqa'
    """
    from grains.data import BUILTIN_DATASETS, load_any

    resolved = str(BUILTIN_DATASETS.get(path, path))
    return load_any(resolved, limit=limit, offset=offset)


def as_pairs(kind: str, rows: list[Any]) -> list[Any]:
    """Preference pairs from loaded rows: TruthfulQA questions and VLM probes are converted, pairs kept.

    Args:
        kind: "truthfulqa", "pairs" or "probes".
        rows: the rows.

    Returns:
        PreferenceExamples.

    Example:
        >>> pairs = as_pairs(*load_rows("truthfulqa", 4))
    """
    if kind == "truthfulqa":
        from grains.data import truthfulqa_to_pairs

        return truthfulqa_to_pairs(rows)
    if kind == "probes":
        from grains.vlm.pope import probes_to_pairs

        return probes_to_pairs(rows)
    return rows


def cmd_build(args: argparse.Namespace) -> int:
    """`build`: a steering vector from a dataset, saved to --out, with its suggested layer and strength.

    Args:
        args: parsed `build` arguments.

    Returns:
        0 once the vector is saved.

    Example:
        >>> cmd_build(build_parser().parse_args(["build", "--data", "truthfulqa", "--out", "v.safetensors"]))
    """
    from grains.build import build_vector
    from grains.progress import ProgressBar

    kind, rows = load_rows(args.data, args.limit, args.offset)
    examples = as_pairs(kind, rows)
    lm = load_lm(args)
    progress = None if args.quiet else ProgressBar()  # stderr, so it shows with --json too
    result = build_vector(lm, examples, method=args.method, k=args.top_k, steps=args.steps, target=args.target,
                          position=args.position, content_only=not args.all_tokens, select=not args.no_select,
                          folds=args.folds, layers=args.layers, strengths=args.strengths, progress=progress,
                          search=args.search, normalize=args.normalize,
                          kl_budget=None if args.kl_budget <= 0 else args.kl_budget,
                          report_side_effects=args.side_effects)
    out = result.vector.save(args.out)
    summary = {**result.summary(), "out": str(out), "data_kind": kind}
    phases = phase_times(summary["timings"], digits=1, sep=", ")
    text = (f"saved {out} ({summary['method']}, {summary['n_examples']} examples): suggested layer "
            f"{summary['layer']}, strength {summary['strength']:g}. {summary['note']}"
            + (f"\ntime: {summary['seconds']:.1f} s ({phases})" if phases else ""))
    if result.side_effects is not None:
        text += f"\nside effects: {result.side_effects.reading()}"
    if summary["attribution_convergence"]:
        text += f"\nattributions (for top-k): {summary['attribution_convergence']['reading']}"
    for warning in summary["warnings"]:
        text += f"\nwarning: {warning}"
    emit(args, summary, text)
    return 0


def vector_arg(args: argparse.Namespace, lm: LoadedModel) -> SteeringVector | None:
    """The --vector file, checked against the model (--allow-other-model relaxes the check), or None.

    Args:
        args: parsed arguments.
        lm: the model it will steer.

    Returns:
        The SteeringVector, or None without --vector.

    Example:
        >>> vector = vector_arg(args, lm)
    """
    if not args.vector:
        return None
    from grains.vectors import load_vector

    vector = load_vector(args.vector)
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers,
                      allow_other_model=getattr(args, "allow_other_model", False))
    return vector


def cmd_generate(args: argparse.Namespace) -> int:
    """`generate`: unsteered and steered continuations side by side.

    Args:
        args: parsed `generate` arguments (prompt, vector, layer, strength, decoding settings).

    Returns:
        0 after both continuations are printed.

    Example:
        >>> cmd_generate(build_parser().parse_args(["generate", "--prompt", "Hello", "--vector", "v.safetensors"]))
    """
    from grains.generation import GenerationSettings, generate_pair

    lm = load_lm(args)
    vector = vector_arg(args, lm)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                                  temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                  stop=tuple(s.replace("\\n", "\n") for s in args.stop or ()))
    start = time.perf_counter()
    steering = None
    if vector is not None:
        from grains.steering import Steering

        steering = Steering.create(lm, vector, args.layer, args.strength, args.normalize, args.allow_other_model)
    pair = generate_pair(lm, args.prompt, steering, settings=settings, image=image_arg(args))
    data = {"unsteered": pair.unsteered, "steered": pair.steered, "seconds": time.perf_counter() - start,
            "prompt_text": pair.prompt_text, "prompt_format": lm.prompt_format, "sampled": bool(args.sample),
            "seed": args.seed}
    if steering is not None:
        data["layer"] = steering.layers[0] if len(steering.layers) == 1 else list(steering.layers)
        data["strength"] = steering.strength
        data["steering"] = steering.to_dict()
    emit(args, data, f"--- unsteered ---\n{pair.unsteered}\n--- steered ---\n{pair.steered}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """`eval`: accuracy with and without a vector, with the paired test and the side effects.

    Args:
        args: parsed `eval` arguments.

    Returns:
        0; the result is printed as indented JSON (one line with --json).

    Example:
        >>> cmd_eval(build_parser().parse_args(["eval", "--data", "truthfulqa", "--limit", "8"]))
    """
    from grains.evaluation import evaluate

    kind, rows = load_rows(args.data, args.limit, args.offset)
    lm = load_lm(args)
    vector = vector_arg(args, lm)
    result = evaluate(lm, rows, kind, vector, args.layer, args.strength, per_item=args.per_item,
                      length_normalize=args.length_normalize, normalize=args.normalize,
                      side_effects=args.side_effects, allow_other_model=args.allow_other_model,
                      first_row=max(0, args.offset), steerability=True).to_dict()
    text = dumps({k: v for k, v in result.items() if k != "items"}, indent=2)
    emit(args, result, text)
    return 0


def cmd_check_image(args: argparse.Namespace) -> int:
    """`check-image`: POPE-style hallucination check of one photo, optionally steered (--vector) or re-checked
    with a vector built from other probes (--build-from).

    Args:
        args: parsed `check-image` arguments.

    Returns:
        0 after the report is printed (a table, or its JSON).

    Example:
        >>> cmd_check_image(build_parser().parse_args(["check-image", "--image", "photo.jpg", "--present", "cup"]))
    """
    from grains.errors import InputError
    from grains.images import load_image
    from grains.vlm.check import resolve_objects, steer_and_recheck

    if args.absent and args.setting:
        raise InputError("Give --absent or --setting, not both.")
    if args.vector and args.build_from:
        raise InputError("Give --vector or --build-from, not both.")
    resolve_objects(args.present, args.absent, args.setting, args.n_absent, args.seed)  # cheap checks first
    image = load_image(args.image)
    lm = load_lm(args)
    progress = None if args.json or args.quiet else (lambda f, m: print(f"[{f:5.0%}] {m}", file=sys.stderr))
    if args.build_from:
        report = steer_and_recheck(lm, image, args.present, args.absent, args.setting,
                                   source="user" if args.build_from == "probes" else "shipped", steps=args.steps,
                                   layer=args.layer, strength=args.strength, n_absent=args.n_absent, seed=args.seed,
                                   progress=progress)
    else:
        from grains.vlm.check import check_image

        report = check_image(lm, image, args.present, args.absent, args.setting, vector_arg(args, lm), args.layer,
                             args.strength, n_absent=args.n_absent, seed=args.seed, progress=progress)
    report.image["name"] = Path(args.image).name
    data = report.to_dict()
    emit(args, data, str(report))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """`presets`: every model preset, its group and whether it is installed.

    Args:
        args: parsed `presets` arguments (only --json).

    Returns:
        0.

    Example:
        >>> cmd_presets(build_parser().parse_args(["presets"]))
    """
    from grains.presets import PRESETS, is_installed

    data = {name: {"group": p.group, "description": p.description, "installed": is_installed(name),
                   "random_weights": p.random_weights, "vlm": p.vlm, "install": p.install_hint}
            for name, p in PRESETS.items()}
    text = "\n".join(f"{n:28s} {d['group']:9s} {'installed' if d['installed'] else 'not installed':14s} "
                     f"{d['description']}" for n, d in data.items())
    emit(args, {"presets": data}, text)
    return 0


def cmd_scenes(args: argparse.Namespace) -> int:
    """`scenes`: write generated scenes (images, label masks) and their POPE-style probes.jsonl to --out.

    Args:
        args: parsed `scenes` arguments.

    Returns:
        0 after the summary is printed.
    """
    from grains.vlm.toy.probes import write_scene_set

    data = write_scene_set(args.out, args.seed, args.n, args.distribution)
    emit(args, data, f"{data['scenes']} scenes, {data['probes']} probes ({data['per_setting']}) -> "
                     f"{data['probes_file']}")
    return 0
