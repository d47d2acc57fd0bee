"""The app's named API endpoints (docs/api.md is the contract): one function per `api_name`, with the parameter
names, order and defaults clients call. Each checks its arguments (components.inputs), builds one `grains.Steering`
right after reading layer/strength/normalize where it steers, calls the tab's actions and returns plain data or HTML.

The panels register these on hidden components (components.common.api_endpoint), which wraps each in `guarded`
and takes its first line of docstring as the API description. The first parameter is always the caller's session.

Every parameter after the required ones has a default here as well as in its hidden component (Gradio 6 marks a
parameter optional when its component has a value, or when its component's value is None and the function's
parameter defaults to None), so short calls like /attribute(prompt, chosen, rejected) and keyword calls work.
"""

from __future__ import annotations

from typing import Any

from components.actions import attribution as attr_actions
from components.actions import compare as compare_actions
from components.actions import evaluate as eval_actions
from components.actions import hallucination as hc_actions
from components.actions import steering as steer_actions
from components.actions.model import resolve_name, switch_model
from components.inputs import (
    dataset_name,
    parse_overrides,
    parse_stop,
    require_attribution,
    session_steering,
    settings_from,
    steering_or_suggestion,
    sweep_grid,
    sweep_steerings,
)
from components.model_cache import session_model
from components.queue_bypass import answers_from_memory
from components.session import Session
from components.views.attribution import render, steered_view_html
from grains.attribution import DEFAULT_STEPS
from grains.errors import Cancelled, InputError
from grains.serialize import to_jsonable

MAX_SWEEP = 8  # strengths per /strength_sweep (the Compare tab's limit)
MAX_SWEEP_CELLS = 60  # layer x strength cells per /sweep (the Evaluate tab's limit)


def _heatmap(session: Session, k: Any = 5, content_only: bool = True, skip_punctuation: bool = False) -> str:
    sel = attr_actions.current_selection(session, k, content_only, skip_punctuation)
    return render(session.attribution, session.example, sel, session.overrides)[0]


# ------------------------------------------------------------------------------------------------ Attribute tab

@answers_from_memory
def attribute(session: Session, prompt: str, chosen: str, rejected: str, steps: Any = DEFAULT_STEPS,
              image: str | None = None, target: str = "sequence", baseline: str = "zero",
              prompt_format: str = "") -> tuple[Session, str, dict, float]:
    """Contrastive IG over the prompt tokens; also becomes the session's current example. prompt_format: raw
    (as written), qa (Q: ... A:) or chat ("" = the model's default); scores["prompt_text"] is what the model saw."""
    result = attr_actions.run_attribution(session, prompt, chosen, rejected, image, steps, target or "sequence",
                                          baseline or "zero", prompt_format=prompt_format)
    return session, _heatmap(session), attr_actions.scores_json(session), result.delta


@answers_from_memory
def attribute_steered(session: Session, layer: Any = None, strength: Any = None,
                      normalize: bool = True) -> tuple[str, dict]:
    """Re-attribute the session's last /attribute example with its vector on (layer, strength: None = the
    vector's suggestion); returns the steered and unsteered heatmaps with their difference, and the JSON (per-
    token difference steered − unsteered, both scores, margins, deltas and convergence)."""
    unsteered = require_attribution(session, "Run an attribution first: the vector-on heatmap re-attributes the "
                                             "same example.")
    steering = steering_or_suggestion(session, session_model(session), layer, strength, normalize)
    steered, diff = attr_actions.run_steered_attribution(session, steering)
    return (steered_view_html(unsteered, steered, diff, steering),
            attr_actions.steered_json(unsteered, steered, diff))


def select_tokens(session: Session, k: Any, force_positive: str, force_negative: str, drop: str,
                  content_only: bool, skip_punctuation: bool) -> tuple[Session, str, dict]:
    """Top-k selection on the last attribution, with forced/dropped token indices (used by /build_vector)."""
    if session.attribution is None:
        raise InputError("Run /attribute first: the indices refer to its prompt tokens.")
    session.overrides = parse_overrides(force_positive, force_negative, drop, len(session.attribution.tokens),
                                        disjoint=False)
    heat = _heatmap(session, k, content_only, skip_punctuation)
    return session, heat, to_jsonable(attr_actions.selection_json(session, k, content_only, skip_punctuation))


# ---------------------------------------------------------------------------------------------------- Steer tab

def build_vector(session: Session, source: str, dataset: str, file: str | None, rows: Any, offset: Any, method: str,
                 k: Any, steps: Any, cross_validate: bool, normalize: bool = True,
                 prompt_format: str = "") -> tuple[Session, dict, str]:
    """Build this session's steering vector from the current example (source="example") or a dataset
    (a shipped name, or an uploaded JSONL/CSV file with dataset="uploaded file" or empty); normalize is the
    keep-the-norm switch used while choosing the strength, prompt_format raw/qa/chat ("" = the model's)."""
    if source not in ("example", "dataset"):
        raise InputError("source must be 'example' or 'dataset'.")
    session.cancel, session.build_pending = False, True
    try:
        summary = steer_actions.run_build(session, source, dataset_name(dataset, file), file, rows, offset, method, k,
                                          steps, "sequence", True, False, cross_validate,
                                          normalize=normalize is not False, prompt_format=prompt_format)
    except Cancelled as exc:
        raise InputError(f"{exc} The previous vector is kept.") from None
    finally:
        session.cancel, session.build_pending = False, False
    return session, summary, session.vector_path


def stop_build(session: Session) -> dict:
    """Ask this session's running (or queued) vector build to stop after its current step; the previous
    vector is kept and every steering hook comes off. Returns {"stopping": true} when a build was running."""
    return {"stopping": steer_actions.request_stop(session)}


def load_vector(session: Session, vector_file: str | None, allow_other_model: bool = False) -> tuple[Session, dict]:
    """Load a .safetensors steering vector into this session (checked against the session's model; a vector
    built for another model is refused unless allow_other_model)."""
    warnings = steer_actions.load_vector_file(session, vector_file, bool(allow_other_model))
    return session, to_jsonable({**steer_actions.vector_info(session), "warnings": warnings})


def export_gguf(session: Session, layer: Any = 9, strength: Any = 0.5) -> tuple[dict, str]:
    """This session's vector as a GGUF control vector for llama.cpp / EasySteer, with their commands."""
    from components.actions.server_export import export_for_server

    return export_for_server(session, layer, strength)


def vector_info(session: Session) -> dict:
    """This session's current vector (null when there is none)."""
    return to_jsonable(steer_actions.vector_info(session))


# -------------------------------------------------------------------------------------------------- Compare tab

@answers_from_memory
def generate(session: Session, prompt: str, layer: Any = 0, strength: Any = 0.5, max_new_tokens: Any = 40,
             image: str | None = None, do_sample: bool = False, temperature: Any = 1.0, top_p: Any = 1.0,
             seed: Any = 0, normalize: bool = True, prompt_format: str = "", stop: str = "") -> tuple[str, str]:
    """Unsteered and steered continuations (one batch, paired sampling) with this session's vector; strength
    -4..4 (negative steers toward the rejected answers); prompt_format raw/qa/chat ("" = the model's); stop:
    stop sequences, one per line (\\n written as two characters is a line break), each row cut before one."""
    settings = settings_from(max_new_tokens, do_sample, temperature, top_p, seed, parse_stop(False, stop))
    steering = session_steering(session, session_model(session), layer, strength, normalize is not False)
    pair = compare_actions.generate_texts(session, prompt, image, steering, settings, prompt_format)
    return pair.unsteered, pair.steered


def strength_sweep(session: Session, prompt: str, layer: Any = 0, strengths: str = "0, 0.5, 1",
                   max_new_tokens: Any = 40, image: str | None = None, normalize: bool = True,
                   prompt_format: str = "", stop: str = "") -> list:
    """Greedy continuations at several strengths: [[strength, text, what changed against unsteered (with a
    DEGENERATE flag), mean KL on neutral prompts (nats)], ...]; no row is named best; stop as in /generate."""
    settings = settings_from(max_new_tokens, False, 1, 1, 0, parse_stop(False, stop))
    steerings = sweep_steerings(session, session_model(session), layer, strengths, normalize is not False, MAX_SWEEP)
    return to_jsonable(compare_actions.strength_sweep(session, prompt, image, steerings, settings,
                                                      prompt_format=prompt_format))


# ------------------------------------------------------------------------------------------------- Evaluate tab

def evaluate(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, steered: bool,
             layer: Any, strength: Any, normalize: bool = True, length_normalize: bool = False,
             prompt_format: str = "", side_effects: bool = True) -> tuple[dict, str]:
    """Accuracy unsteered and (steered=True) with this session's vector; p-value, CI, reading, per-item rows,
    and when steered its side effects (result["side_effects"]). Strength -4..4; prompt_format raw/qa/chat."""
    steering = (session_steering(session, session_model(session), layer, strength, normalize is not False)
                if steered else None)
    result = eval_actions.run_evaluation(session, dataset_name(dataset, file), file, rows, offset, steering,
                                         bool(length_normalize), prompt_format=prompt_format,
                                         side_effects=side_effects is not False)
    return result, eval_actions.evaluation_csv(result)


def sweep(session: Session, dataset: str, file: str | None, rows: Any, offset: Any, layers: str,
          strengths: str, normalize: bool = True, length_normalize: bool = False, prompt_format: str = "",
          kl: bool = True) -> tuple[dict, str]:
    """Accuracy gain of this session's vector over a layer x strength grid: raw and Holm-adjusted p-values,
    "significant" (Holm), "cells_tested", "best_of_n" and, with kl, each cell's mean KL on neutral prompts."""
    layer_list, steerings = sweep_grid(session, session_model(session), layers, strengths, normalize is not False,
                                       MAX_SWEEP_CELLS)
    result = eval_actions.run_sweep(session, dataset_name(dataset, file), file, rows, offset, layer_list, steerings,
                                    length_normalize=bool(length_normalize), prompt_format=prompt_format,
                                    kl=kl is not False)
    return result, eval_actions.sweep_csv(result)


# -------------------------------------------------------------------------------------- Hallucination check tab

def check_image(session: Session, image_file: str | None, present_text: str, absent_text: str, setting_value: str,
                build_from: str, strength_value: Any) -> dict:
    """Hallucination check of one photo; with build_from (shipped/probes) a vector is built and the photo
    re-checked on held-out probes."""
    data = hc_actions.run_check(session, image_file, present_text or "", absent_text or "", setting_value or None)
    if build_from:
        if build_from not in ("shipped", "probes"):
            raise InputError("build_from must be '', 'shipped' or 'probes'.")
        chosen = None if strength_value is None or strength_value == "" else float(strength_value)
        data = hc_actions.run_recheck(session, data, "user" if build_from == "probes" else "shipped", 12, 8,
                                      chosen is None, None, chosen)
    return to_jsonable(data)


# ---------------------------------------------------------------------------------------------------- model bar

def load_model(session: Session, name: str) -> tuple[Session, dict]:
    """Load a preset, hub id or local path as this session's model; returns its info."""
    lm = switch_model(session, resolve_name(None, name))
    info = lm.info()
    info["vector"] = session.vector_label or None
    return session, to_jsonable(info)
