"""The CLI's `export` and `import` commands: a Studio vector to a GGUF control vector for llama.cpp / EasySteer / repeng
(with the engines' command lines and the measured rescale gap), and a GGUF control vector back into a Studio vector."""

from __future__ import annotations

import argparse
from typing import Any

from grains.cli_args import common_arguments, int_list, other_model_flag
from grains.cli_commands import emit, load_lm


def export_arguments(p: argparse.ArgumentParser) -> None:
    """VECTOR, --format, --out, --layers, --strength, --engine-model, --no-measure and the shared flags.

    Args:
        p: the `export` subparser.

    Returns:
        None.
    """
    common_arguments(p)
    p.add_argument("vector", help="a Studio vector (.safetensors)")
    p.add_argument("--format", choices=["gguf"], default="gguf", help="gguf: llama.cpp / EasySteer / repeng")
    p.add_argument("--out", required=True, help="the .gguf file to write")
    p.add_argument("--layers", type=int_list, default=None,
                   help="layers to write, e.g. 11,12 (default: the vector's suggested layer; never 0)")
    p.add_argument("--strength", type=float, default=None,
                   help="Studio strength = the engines' scale (default: the vector's suggested strength)")
    p.add_argument("--engine-model", default="MODEL.gguf", help="the model's GGUF path for the printed commands")
    p.add_argument("--no-measure", action="store_true",
                   help="skip measuring the rescale difference (the model is still loaded for its type)")
    other_model_flag(p)


def import_arguments(p: argparse.ArgumentParser) -> None:
    """GGUF, --out, --allow-other-model and the shared flags.

    Args:
        p: the `import` subparser.

    Returns:
        None.
    """
    common_arguments(p)
    p.add_argument("gguf", help="a GGUF control vector (llama.cpp cvector-generator, repeng, EasySteer, grains)")
    p.add_argument("--out", required=True, help="the Studio vector to write (.safetensors)")
    other_model_flag(p)


def _model_type(lm: Any) -> str:
    from grains.adapters import text_config

    return str(getattr(text_config(lm.model.config), "model_type", "") or lm.model.config.model_type or "")


def cmd_export(args: argparse.Namespace) -> int:
    """`export`: write the GGUF, print the llama.cpp commands, the EasySteer body and the rescale warning.

    Args:
        args: parsed `export` arguments.

    Returns:
        0; bad input raises a GrainsError (one line, exit 2).
    """
    from grains.export import check_export_layers, check_export_path, export_gguf
    from grains.serving import (
        check_engine_model,
        easysteer_request,
        llama_cpp_commands,
        measure_rescale_gap,
        serving_text,
    )
    from grains.steering import Steering, check_strength
    from grains.vectors import load_vector

    vector = load_vector(args.vector)
    layers = check_export_layers(vector, args.layers)  # cheap refusals before the model loads
    check_export_path(args.out)
    strength = check_strength(vector.default_strength if args.strength is None else args.strength)
    if args.model is None:
        args.model = vector.model_id
    lm = load_lm(args)
    check_engine_model(lm)
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=args.allow_other_model)
    written = export_gguf(vector, args.out, layers=layers, strength=strength, model_type=_model_type(lm))
    gap = None
    if not args.no_measure:
        steering = Steering.create(lm, vector, layers, strength, allow_other_model=True)
        gap = measure_rescale_gap(lm, steering)
    data = {**written.to_dict(), "llama_cpp": llama_cpp_commands(written.path, layers, strength, args.engine_model),
            "easysteer_request": easysteer_request(written.path, layers, strength),
            "rescale_gap": gap.to_dict() if gap else None,
            "warning": gap.sentence(strength) if gap else "rescale difference not measured"}
    emit(args, data, serving_text(written.path, layers, strength, gap, args.engine_model))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """`import`: a GGUF control vector into a Studio vector for --model.

    Args:
        args: parsed `import` arguments.

    Returns:
        0; a file that does not fit the model raises a GrainsError (one line, exit 2).
    """
    from grains.control_vectors import import_control_vector, read_control_vector

    read_control_vector(args.gguf)  # a broken file is refused before the model loads
    lm = load_lm(args)
    vector = import_control_vector(args.gguf, lm, allow_other_model=args.allow_other_model)
    path = vector.save(args.out)
    data = {"path": str(path), "provenance": vector.meta["provenance"], "layers": vector.layers,
            "default_layer": vector.default_layer, "default_strength": vector.default_strength,
            "layer_norms": {str(k): v for k, v in vector.layer_norms.items()}, "model_id": vector.model_id}
    emit(args, data, f"wrote {path}: {vector.meta['provenance']}; layers {vector.layers}, suggested layer "
                     f"{vector.default_layer} at strength {vector.default_strength:.3g} (the engine's scale 1; "
                     "strength in units of this model's median hidden-state norm)")
    return 0
