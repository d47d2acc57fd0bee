"""Model bar actions: which model a preset or typed name means, and switching the session to it (a vector that
does not fit the new model is dropped; the shipped default takes its place when it fits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.model_cache import DEFAULT_VECTOR_PATH, MODELS, default_vector_for, default_vector_label
from components.session import Session
from grains.errors import InputError
from grains.presets import PRESETS, is_installed

if TYPE_CHECKING:
    from grains.models import LoadedModel


def resolve_name(preset: str | None, custom: str | None) -> str:
    """The typed hub id / path when given, else the preset; an extra preset that is missing says how to get it."""
    name = (custom or "").strip() or (preset or "").strip()
    if not name:
        raise InputError("Choose a preset or type a hub id or local path.")
    if name in PRESETS and PRESETS[name].group == "extra" and not is_installed(name):
        raise InputError(f"{name} is not installed. Install it with: {PRESETS[name].install_hint}")
    return name


def switch_model(session: Session, name: str) -> LoadedModel:
    """Load `name` (shared cache) and make it the session's model; on failure the session keeps its model.

    A vector that does not fit the new model is dropped (the shipped default takes its place when it fits)."""
    lm = MODELS.get(name)
    if name != session.model_name:
        session.model_name = name
        session.attribution, session.example, session.inputs = None, None, {}
        session.clear_overrides()
        fits = False
        if session.vector is not None:
            try:
                session.vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=True)
                fits = session.vector.model_id == lm.model_id
            except Exception:  # noqa: BLE001 - any misfit means: drop it
                fits = False
        if not fits:
            session.set_vector(None, "", None)
            default = default_vector_for(name)
            if default is not None:
                session.set_vector(default, default_vector_label(default), str(DEFAULT_VECTOR_PATH))
    return lm
