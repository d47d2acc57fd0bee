"""Input parsing and argument checks for the panels and the API: whole numbers, index and number lists, token
overrides, stop sequences, generation settings, the prompt format, an uploaded image for the model, and the one
`grains.Steering` built from the layer, strength and keep-the-norm values a panel or API call was given.

Every check raises `InputError` (or `VectorError`) with one sentence; nothing here imports gradio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grains.errors import InputError, VectorError

if TYPE_CHECKING:
    from components.session import Session
    from grains.attribution import AttributionResult
    from grains.generation import GenerationSettings
    from grains.models import LoadedModel
    from grains.steering import Steering
    from grains.vectors import SteeringVector

ALLOW_OTHER_LABEL = "Allow a vector from another model"
OVERRIDE_ORDER = ("force_positive", "force_negative", "drop")


def whole(value: Any, what: str) -> int:
    """A whole number from a UI/API value (2.0 is fine, 2.5 is not).

    Args:
        value: the value as given (number or text).
        what: its name, for the message.

    Returns:
        The integer.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number.") from None
    if not number.is_integer():
        raise InputError(f"{what} must be a whole number, not {value}.")
    return int(number)


def first_row(offset: Any) -> int:
    """The first dataset row from an offset value (0 for anything that is not a non-negative number)."""
    try:
        return max(0, int(float(offset or 0)))
    except (TypeError, ValueError):
        return 0


def tolerance_value(value: Any) -> float | None:
    """The IG tolerance from the UI (a percentage; 0 turns refinement off).

    Args:
        value: percent, 0 to under 100.

    Returns:
        The tolerance as a fraction, or None for 0 (a fixed rule).
    """
    try:
        percent = float(value)
    except (TypeError, ValueError):
        raise InputError("The IG tolerance must be a number (percent).") from None
    if not 0 <= percent < 100:
        raise InputError("The IG tolerance must be between 0 and 100 percent (0 turns refinement off).")
    return percent / 100 if percent > 0 else None


def parse_indices(text: str | None, what: str, limit: int | None = None) -> list[int]:
    """'1, 4 7' -> [1, 4, 7]; raises InputError on anything but whole numbers (in range when `limit` is given).

    Args:
        text: indices separated by commas or spaces.
        what: the field's name, for the message.
        limit: indices must be below this (None: no upper bound).

    Returns:
        The sorted distinct indices.
    """
    out: list[int] = []
    for part in (text or "").replace(",", " ").split():
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"{what}: {part!r} is not a token index (a whole number).") from None
        if value < 0 or (limit is not None and value >= limit):
            upper = f" to {limit - 1}" if limit is not None else " or more"
            raise InputError(f"{what}: token index {value} is out of range (0{upper}).")
        out.append(value)
    return sorted(set(out))


def parse_numbers(text: str | None, what: str, whole: bool = False) -> list[float]:
    """'0, 0.25 0.5' -> [0.0, 0.25, 0.5]; raises InputError on anything that is not a finite number.

    Args:
        text: numbers separated by commas or spaces.
        what: the field's name, for the message.
        whole: every number must be a whole number.

    Returns:
        The numbers in the order given (at least one).
    """
    out: list[float] = []
    for part in (text or "").replace(",", " ").split():
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"{what}: {part!r} is not a number.") from None
        if not math.isfinite(value):
            raise InputError(f"{what}: {part!r} is not a finite number.")
        if whole and not value.is_integer():
            raise InputError(f"{what}: {part!r} is not a whole number.")
        out.append(value)
    if not out:
        raise InputError(f"{what}: give at least one number.")
    return out


def cycle_override(overrides: dict[str, list[int]], index: int) -> str:
    """Cycle token `index` through auto -> forced positive -> forced negative -> dropped -> auto.

    Args:
        overrides: the session's override lists (changed in place).
        index: the token clicked.

    Returns:
        Its new state: "force_positive", "force_negative", "drop" or "auto".
    """
    order = list(OVERRIDE_ORDER)
    current = next((key for key in order if index in overrides[key]), None)
    for key in order:
        overrides[key] = [i for i in overrides[key] if i != index]
    following = order[0] if current is None else (order[order.index(current) + 1] if current != "drop" else None)
    if following is not None:
        overrides[following] = sorted(overrides[following] + [index])
    return following or "auto"


def parse_overrides(force_positive: str | None, force_negative: str | None, drop: str | None, limit: int,
                    names: Sequence[str] = OVERRIDE_ORDER, disjoint: bool = True) -> dict[str, list[int]]:
    """The three override lists from their text boxes, each index below `limit`.

    Args:
        force_positive, force_negative, drop: indices as text.
        limit: the number of prompt tokens.
        names: the three fields' names, for the messages.
        disjoint: refuse an index that is in two lists.

    Returns:
        {"force_positive": [...], "force_negative": [...], "drop": [...]}.
    """
    pos = parse_indices(force_positive, names[0], limit)
    neg = parse_indices(force_negative, names[1], limit)
    dropped = parse_indices(drop, names[2], limit)
    clash = (set(pos) & set(neg)) | (set(pos) & set(dropped)) | (set(neg) & set(dropped))
    if disjoint and clash:
        raise InputError(f"Token {min(clash)} is in two override lists; put each index in one list only.")
    return {"force_positive": pos, "force_negative": neg, "drop": dropped}


def parse_stop(stop_qa: Any, custom: Any) -> tuple[str, ...]:
    """The stop sequences: a new "Q:" turn when `stop_qa`, plus one per non-empty line of `custom` (the two
    characters \\n stand for a line break; other text is taken as written).

    Args:
        stop_qa: stop at a new "Q:" turn.
        custom: more stop sequences, one per line.

    Returns:
        The distinct stop sequences, "Q:" first.
    """
    from grains.generation import QA_STOP

    out: list[str] = [QA_STOP] if stop_qa else []
    for line in str(custom or "").splitlines():
        if line.strip():
            value = line.replace("\\n", "\n")
            if value not in out:
                out.append(value)
    return tuple(out)


def settings_from(max_new_tokens: Any, do_sample: bool, temperature: Any, top_p: Any, seed: Any,
                  stop: tuple[str, ...] = ()) -> GenerationSettings:
    """Checked generation settings from the UI/API values.

    Args:
        max_new_tokens, do_sample, temperature, top_p, seed: as given (None temperature/top_p: 1).
        stop: stop sequences (see `parse_stop`).

    Returns:
        The GenerationSettings, checked.
    """
    from grains.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=whole(max_new_tokens, "max_new_tokens"), do_sample=bool(do_sample),
                                  temperature=float(temperature if temperature is not None else 1.0),
                                  top_p=float(top_p if top_p is not None else 1.0), seed=whole(seed or 0, "Seed"),
                                  stop=tuple(stop))
    settings.check()
    return settings


def chosen_format(value: Any) -> str | None:
    """A UI/API prompt format value: "" or None -> None (the model's default), else the name (checked later)."""
    text = str(value).strip() if value is not None else ""
    return text or None


def dataset_name(dataset: str | None, file: str | None) -> str:
    """The dataset an API call means: its name, else the uploaded file when one was given, else TruthfulQA."""
    from components.datasets import UPLOAD

    return dataset if dataset else (UPLOAD if file else "truthfulqa")


def open_image(path: str | None, lm: LoadedModel) -> Any:
    """The uploaded image for a VLM (validated); None when no image was given; an error for a text model.

    Args:
        path: the uploaded file (or None).
        lm: the session's model.

    Returns:
        The PIL image, or None.
    """
    if not path:
        return None
    from grains.images import load_image

    if not lm.is_vlm:
        raise InputError("This is a text-only model: it cannot take an image. Load a vision-language model "
                         "(e.g. tiny-random-llava) or remove the image.")
    return load_image(path)


def require_attribution(session: Session, message: str) -> AttributionResult:
    """The session's last attribution, or InputError(`message`) when there is none."""
    if session.attribution is None or not session.inputs:
        raise InputError(message)
    return session.attribution


def require_vector(session: Session) -> SteeringVector:
    """The session's vector, or a clear InputError when there is none."""
    if session.vector is None:
        raise InputError("This session has no steering vector: build one or load one in the Steer tab first.")
    return session.vector


def check_vector_model(vector: SteeringVector, lm: LoadedModel, allow_other_model: bool) -> None:
    """The one rule for a vector from another model, with the one message every panel shows.

    Args:
        vector: the vector.
        lm: the session's model.
        allow_other_model: the user allowed a vector built for another model (same shapes).
    """
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=True)  # shapes: always
    if vector.model_id != lm.model_id and not allow_other_model:
        raise VectorError(f"This vector was built for {vector.model_id!r}, not for {lm.model_id!r}: it is refused. "
                          f"Tick \"{ALLOW_OTHER_LABEL}\" beside Load vector (Steer tab) to use it anyway.")


def session_steering(session: Session, lm: LoadedModel, layer: Any, strength: Any,
                     normalize: Any = True) -> Steering:
    """The one `grains.Steering` every panel passes to the library: the session's vector at the given layer,
    strength and keep-the-norm switch, checked once (layer range, strength -4..4, the other-model rule).

    Args:
        session: whose vector.
        lm: the session's model.
        layer: the layer slider's value (a whole number).
        strength: the strength slider's value.
        normalize: the keep-the-norm switch.

    Returns:
        The checked Steering.
    """
    from grains.steering import Steering, check_strength

    vector = require_vector(session)
    check_vector_model(vector, lm, session.allow_other_model)
    value = check_strength(strength)
    return Steering.create(lm, vector, whole(layer, "The layer"), value, normalize=bool(normalize),
                           allow_other_model=session.allow_other_model)


def steering_or_suggestion(session: Session, lm: LoadedModel, layer: Any = None, strength: Any = None,
                           normalize: Any = True) -> Steering:
    """`session_steering` where a missing layer or strength (None or "") means the vector's suggestion."""
    vector = require_vector(session)
    layer = vector.default_layer if layer is None or layer == "" else layer
    strength = vector.default_strength if strength is None or strength == "" else strength
    return session_steering(session, lm, layer, strength, normalize is not False)


def sweep_steerings(session: Session, lm: LoadedModel, layer: Any, strengths: str | None, normalize: Any,
                    limit: int) -> list[Steering]:
    """One checked Steering per strength of a comma-separated list, all at `layer` (every one checked before
    anything runs).

    Args:
        session: whose vector.
        lm: the session's model.
        layer: the layer slider's value.
        strengths: e.g. "-0.5, 0, 0.5".
        normalize: the keep-the-norm switch.
        limit: the most strengths allowed.

    Returns:
        The Steerings, in the order given.
    """
    values = parse_numbers(strengths, "Strengths")
    if len(values) > limit:
        raise InputError(f"Give at most {limit} strengths.")
    return [session_steering(session, lm, layer, value, normalize) for value in values]


def sweep_grid(session: Session, lm: LoadedModel, layers: str | None, strengths: str | None, normalize: Any,
               max_cells: int) -> tuple[list[int], list[Steering]]:
    """The layer x strength grid of a sweep: the layers (blank: the vector's candidate layers, else every layer)
    and one checked Steering per strength at the first layer, every one checked before anything runs.

    Args:
        session: whose vector.
        lm: the session's model.
        layers: e.g. "3, 6, 9" or blank.
        strengths: e.g. "0.25, 0.5".
        normalize: the keep-the-norm switch.
        max_cells: the most cells allowed.

    Returns:
        (layers, Steerings).
    """
    vector = require_vector(session)
    layer_list = ([int(x) for x in parse_numbers(layers, "Layers", whole=True)] if (layers or "").strip()
                  else [la for la in (vector.meta or {}).get("candidate_layers", []) if la < lm.num_layers]
                  or list(range(lm.num_layers)))
    strength_list = parse_numbers(strengths, "Strengths")
    if len(layer_list) * len(strength_list) > max_cells:
        raise InputError(f"The grid has {len(layer_list) * len(strength_list)} cells; keep it to {max_cells} "
                         "or fewer (each cell scores every row).")
    return layer_list, [session_steering(session, lm, layer_list[0], value, normalize) for value in strength_list]
