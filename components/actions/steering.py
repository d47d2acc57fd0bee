"""Steer tab actions: build a vector into the session (from the current example or a dataset, cancellable), load
one from a file, save a named copy for download, stop a running build, and the vector as JSON."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.datasets import UPLOAD, as_pairs, check_kind_fits, load_rows
from components.inputs import check_vector_model, chosen_format, open_image, whole
from components.model_cache import session_model
from components.session import Session, scratch_dir
from grains.errors import InputError
from grains.serialize import to_jsonable

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.models import LoadedModel
    from grains.vectors import SteeringVector


def _slug(text: Any, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text or "")).strip("-.")[:limit].strip("-.")


def vector_file_name(vector: SteeringVector, model_name: str, concept: str | None = None) -> str:
    """A descriptive download name: grains_<model>_<concept or dataset>_<method>_L<suggested layer>.safetensors,
    e.g. grains_gemma-3-270m_truthfulqa_grains_L9.safetensors (a hub id keeps only its last part)."""
    model = _slug(str(model_name).rstrip("/").split("/")[-1]) or "model"
    parts = ["grains", model]
    if _slug(concept):
        parts.append(_slug(concept))
    parts.append(_slug(vector.method) or "vector")
    if vector.default_layer is not None:
        parts.append(f"L{int(vector.default_layer)}")
    return "_".join(parts) + ".safetensors"


def build_concept(source: str, dataset: str | None, upload: str | None) -> str:
    """What a build was made from, for the file name: the dataset's name, the uploaded file's stem, or "example"."""
    if source == "example":
        return "example"
    if dataset == UPLOAD and upload:
        return Path(str(upload)).stem
    return str(dataset or "dataset")


def save_copy(vector: SteeringVector, model_name: str, concept: str | None = None) -> str:
    """Write the vector to a fresh temp folder for download (under `vector_file_name`); returns the path."""
    folder = scratch_dir("vector-")
    return str(vector.save(folder / vector_file_name(vector, model_name, concept)))


def reusable_attribution(session: Session, steps: Any, target: str | None) -> AttributionResult | None:
    """The attribution on screen when it was made for the current example with the build's settings (IG steps,
    target, the zero baseline build uses, the prompt format it was attributed in), so building from the current
    example needs no second IG run; None otherwise."""
    result, i = session.attribution, session.inputs or {}
    if result is None or not i:
        return None
    try:
        same_steps = int(i.get("steps")) == int(float(steps))
    except (TypeError, ValueError):
        return None
    if same_steps and i.get("target") == (target or "sequence") and i.get("baseline", "zero") == "zero":
        return result
    return None


def build_examples(session: Session, lm: LoadedModel, source: str, dataset: str | None, upload: str | None,
                   rows: Any, offset: Any) -> tuple[list[Any], str, dict | None]:
    """(examples, description, overrides) for building."""
    if source == "example":
        if session.attribution is None or not session.inputs:
            raise InputError("Run an attribution first (Attribute tab), or build from a dataset.")
        from grains.data import PreferenceExample

        i = session.inputs
        ex = PreferenceExample(prompt=i["prompt"], chosen=i["chosen"], rejected=i["rejected"], image=i.get("image"))
        ov = {k: list(v) for k, v in session.overrides.items()}
        return [ex], "the current example", {"plus": ov, "minus": dict(ov)}
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    examples = as_pairs(kind, data)
    if lm.is_vlm is False and any(getattr(e, "image", None) for e in examples):
        raise InputError("These examples come with images: load a vision-language model to build from them.")
    return examples, description, None


def claim_rows_needed() -> int:
    """The fewest rows with which a cross-validated build can claim a win (grains.crossval.min_items_for_claim at
    the build's folds and significance level)."""
    from grains.build import build_vector
    from grains.crossval import min_items_for_claim

    folds = inspect.signature(build_vector).parameters["folds"].default
    return min_items_for_claim(folds=folds)


def check_claim_possible(n_rows: int) -> None:
    """Refuse, before any model work, a cross-validated build whose claim test cannot reject with `n_rows` rows, and
    say the two ways on: more rows, or building without the claim.

    Args:
        n_rows: the rows the build would use.

    Raises:
        InputError: with fewer rows than claim_rows_needed().
    """
    need = claim_rows_needed()
    if n_rows < need:
        raise InputError(
            f"A win claim needs at least {need} rows: with {n_rows}, the held-out test of the cross-validated "
            f"choice can never reject \"no gain\", so the build would run for minutes and end with \"the model "
            f"did not move\". Set Rows to {need} or more (a dataset with that many rows), or untick \"Choose layer "
            "and strength by cross-validation\" to build without a claim (a middle layer and strength 0.5, "
            "untested). Nothing was started.")


def run_build(session: Session, source: str, dataset: str | None, upload: str | None, rows: Any, offset: Any,
              method: str, k: Any, steps: Any, target: str, content_only: bool, skip_punctuation: bool,
              cross_validate: bool, progress: Any = None, normalize: Any = True, prompt_format: Any = None) -> dict:
    """Build a vector into the session (cancellable through `session.cancel`, which the caller resets).

    The keep-the-norm switch reaches the cross-validated choice; the prompt format is the Attribute tab's (for the
    current example: the format it was attributed with, so the token overrides point at the same tokens).

    Returns:
        The build's summary, JSON-safe.
    """
    from grains.build import build_vector

    lm = session_model(session)
    examples, description, overrides = build_examples(session, lm, source, dataset, upload, rows, offset)
    if cross_validate and source != "example":
        check_claim_possible(len(examples))
    fmt = session.inputs.get("prompt_format") if source == "example" else chosen_format(prompt_format)
    if source == "example" and session.inputs.get("image"):
        open_image(session.inputs["image"], lm)  # validate once, with a clear message
    reuse = reusable_attribution(session, steps, target) if source == "example" else None
    result = build_vector(lm, examples, method=method or "grains", k=whole(k, "k"), steps=whole(steps, "IG steps"),
                          target=target or "sequence", content_only=bool(content_only),
                          skip_punctuation=bool(skip_punctuation), select=bool(cross_validate),
                          progress=progress, should_stop=lambda: session.cancel, overrides=overrides,
                          normalize=bool(normalize), prompt_format=fmt,
                          attributions=[reuse] if reuse is not None else None)
    vector = result.vector
    label = f"{method} from {description} ({vector.n_examples} example{'s' if vector.n_examples != 1 else ''})"
    concept = build_concept(source, dataset, upload)
    vector.meta = {**(vector.meta or {}), "concept": concept}
    session.set_vector(vector, label, save_copy(vector, session.model_name, concept))
    summary = result.summary()
    summary["reused_attribution"] = reuse is not None and (method or "grains") != "caa"
    summary["skipped"] = summary.get("skipped", [])[:10]
    session.last_build = {"source": source, "dataset": dataset if source == "dataset" else None, "rows": rows,
                          "offset": offset, "method": method, "k": k, "steps": steps, "select": cross_validate,
                          "description": description, "normalize": bool(normalize),
                          "prompt_format": result.vector.meta.get("prompt_format"), "model": session.model_name,
                          "file_name": Path(session.vector_path or "").name}
    return to_jsonable(summary)


def load_vector_file(session: Session, path: str | None, allow_other_model: Any = False) -> list[str]:
    """Load and validate a vector for the session's model; returns warnings (empty when it fits exactly).

    A vector built for another model is refused (one message, as on every other path) unless `allow_other_model`;
    then it is loaded with a warning and every panel steers with it under that permission."""
    from grains.vectors import load_vector

    if not path:
        raise InputError("Choose a .safetensors vector (or a .gguf control vector) to load.")
    lm = session_model(session)
    if str(path).lower().endswith(".gguf"):  # llama.cpp / repeng / EasySteer control vector: imported for this model
        from grains.control_vectors import import_control_vector

        vector = import_control_vector(path, lm, allow_other_model=bool(allow_other_model))
    else:
        vector = load_vector(path)
    check_vector_model(vector, lm, bool(allow_other_model))
    warnings = []
    other = vector.model_id != lm.model_id
    if other:
        warnings.append(f"This vector was built for {vector.model_id!r}, not {lm.model_id!r}; it is used because "
                        f"you allowed a vector from another model. Check its effect before trusting it.")
    concept = (vector.meta or {}).get("concept") or "loaded"
    session.set_vector(vector, f"loaded from {Path(path).name}", save_copy(vector, session.model_name, concept),
                       allow_other_model=other)
    return warnings


def request_stop(session: Session) -> bool:
    """Flag the session's pending build to stop (it polls the flag between steps); False when none is pending."""
    if not session.build_pending:
        return False
    session.cancel = True
    return True


def vector_info(session: Session) -> dict:
    """The session's vector as plain data ({"vector": None} when there is none)."""
    v = session.vector
    if v is None:
        return {"vector": None}
    return {"label": session.vector_label, "model_id": v.model_id, "method": v.method, "k": v.k,
            "n_examples": v.n_examples, "layers": v.layers, "default_layer": v.default_layer,
            "default_strength": v.default_strength, "allow_other_model": session.allow_other_model,
            "meta": {k: val for k, val in (v.meta or {}).items() if k != "selection"},
            "cv": {k: val for k, val in ((v.meta or {}).get("selection") or {}).items() if k != "table"},
            "direction_warnings": v.warnings()}
