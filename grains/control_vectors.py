"""Import a GGUF control vector (written by llama.cpp's cvector-generator, repeng, EasySteer or `grains export`)
into a Studio `SteeringVector`, so a vector made elsewhere can be attributed under, evaluated and compared.

`direction.k` is taken at the place every engine applies it: the output of decoder block k. (llama.cpp's
cvector-generator measures its `direction.k` at block k-1's output and its loader applies it at block k's; what
matters for steering is where it is applied.) The file's scale is absolute, the Studio's relative: each layer's
median hidden-state norm is measured on the target model, so strength 1 means one typical hidden state's length,
and the suggested strength is what the engine's scale 1 adds, |direction.k| / m_k, at the suggested layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from grains.errors import VectorError
from grains.export import ARCHITECTURE, KEY_GRAINS_VECTOR, KEY_LAYER_COUNT, KEY_MODEL_HINT, same_model_family
from grains.local_hooks import local_forward_hook
from grains.vectors import checked_file

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.vectors import SteeringVector

MAX_GGUF_BYTES = 256 * 1024 * 1024
NORM_PROMPTS = 16  # neutral prompts whose tokens give each layer's median hidden-state norm


@dataclass
class ControlVectorFile:
    """The contents of a GGUF control vector.

    Args:
        path: the file.
        architecture: `general.architecture` ("controlvector"; None when missing).
        model_hint: `controlvector.model_hint`.
        layer_count: `controlvector.layer_count` (None when missing).
        directions: {layer k: float32 array}, `direction.k`.
        grains_metadata: the SteeringVector metadata `grains export` stores (None for other writers).
        writer: "grains", or "llama.cpp/repeng/other" for the rest.
    """

    path: Path
    architecture: str | None
    model_hint: str
    layer_count: int | None
    directions: dict[int, np.ndarray]
    grains_metadata: dict[str, Any] | None = None
    writer: str = "llama.cpp/repeng/other"
    notes: list[str] = field(default_factory=list)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])


def _field_value(reader: Any, key: str) -> Any:
    found = reader.get_field(key)
    if found is None:
        return None
    return found.contents()


def read_control_vector(path: str | Path) -> ControlVectorFile:
    """Read and check a GGUF control vector the way llama.cpp's loader does (direction.k names, F32, 1-D, one width,
    no layer 0), plus repeng's rule (a model hint is required).

    Args:
        path: the .gguf file.

    Returns:
        A ControlVectorFile; anything an engine would refuse raises VectorError with one sentence.

    Example:
        >>> read_control_vector("v.gguf").model_hint
        'gemma3'
    """
    import gguf

    path = checked_file(path, "control vector file", MAX_GGUF_BYTES)
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise VectorError("This is not a GGUF file (a control vector starts with the bytes 'GGUF').")
    try:
        reader = gguf.GGUFReader(str(path))
        arch = _field_value(reader, "general.architecture")
        hint = _field_value(reader, KEY_MODEL_HINT)
        count = _field_value(reader, KEY_LAYER_COUNT)
        raw_meta = _field_value(reader, KEY_GRAINS_VECTOR)
        tensors = [(t.name, t.tensor_type, list(t.shape), np.array(t.data)) for t in reader.tensors]
    except (ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise VectorError(f"The GGUF file is corrupt or truncated ({type(exc).__name__}).") from exc
    if arch is not None and arch != ARCHITECTURE:
        raise VectorError(f"This GGUF file is a {arch!r} model, not a control vector (general.architecture must be "
                          f"{ARCHITECTURE!r}).")
    if not hint:
        raise VectorError("The control vector has no controlvector.model_hint, so the model it was made for is "
                          "unknown (repeng refuses such files too).")
    directions: dict[int, np.ndarray] = {}
    for name, kind, shape, data in tensors:
        prefix, _, index = name.partition(".")
        if prefix != "direction" or not index.isdigit():
            raise VectorError(f"The control vector has a tensor {name!r}; only direction.<layer> tensors are allowed.")
        layer = int(index)
        if layer == 0:
            raise VectorError("The control vector has direction.0; llama.cpp rejects layer 0 (block 0's output).")
        if kind != gguf.GGMLQuantizationType.F32:
            raise VectorError(f"{name} is stored as {kind.name}; control vectors must be F32.")
        if len(shape) != 1:
            raise VectorError(f"{name} has shape {shape}; control vector directions must be 1-D.")
        if directions and data.shape[0] != next(iter(directions.values())).shape[0]:
            raise VectorError(f"{name} has {data.shape[0]} values, unlike the file's other directions.")
        if not np.isfinite(data).all():
            raise VectorError(f"{name} has NaN or infinite values.")
        directions[layer] = directions.get(layer, 0) + data.astype(np.float32)  # llama.cpp sums repeated layers
    if not directions:
        raise VectorError("The control vector has no direction tensors.")
    meta = json.loads(raw_meta) if raw_meta else None
    return ControlVectorFile(path=path, architecture=arch, model_hint=str(hint),
                             layer_count=int(count) if count is not None else None, directions=directions,
                             grains_metadata=meta, writer="grains" if meta else "llama.cpp/repeng/other")


def median_layer_norms(lm: LoadedModel, prompts: list[str] | None = None) -> dict[int, float]:
    """Each decoder layer's median token norm over the neutral prompts' tokens: the unit of strength.

    Args:
        lm: the model.
        prompts: texts to run (default: the first NORM_PROMPTS shipped neutral prompts).

    Returns:
        {layer: median norm of that layer's output over all tokens}.
    """
    from grains.side_effects import load_neutral_prompts

    texts = prompts if prompts is not None else load_neutral_prompts(limit=NORM_PROMPTS)
    norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in range(lm.num_layers)}

    def recorder(layer: int):
        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            norms[layer].append(hidden.detach().float().norm(dim=-1).flatten().cpu())
        return hook

    with lm.lock, torch.no_grad():
        handles = [local_forward_hook(lm.adapter.layers[k], recorder(k)) for k in range(lm.num_layers)]
        try:
            for text in texts:
                ids = torch.tensor([lm.encode_prompt(text).ids], device=lm.adapter.input_device)
                lm.model(input_ids=ids)
        finally:
            for handle in handles:
                handle.remove()
    return {layer: float(torch.cat(values).median()) for layer, values in norms.items()}


def _check_target(cv: ControlVectorFile, lm: LoadedModel, model_type: str, allow_other_model: bool) -> None:
    if cv.hidden_size != lm.hidden_size:
        raise VectorError(f"The control vector's directions have {cv.hidden_size} values; {lm.model_id!r} has hidden "
                          f"size {lm.hidden_size}.")
    top = max(cv.directions)
    if top >= lm.num_layers:
        raise VectorError(f"The control vector steers layer {top}; {lm.model_id!r} has layers 0 to "
                          f"{lm.num_layers - 1}.")
    if not allow_other_model and not same_model_family(cv.model_hint, model_type):
        raise VectorError(f"The control vector was made for a {cv.model_hint!r} model, not {model_type!r} "
                          f"({lm.model_id}); pass --allow-other-model to import it anyway.")


def import_control_vector(path: str | Path, lm: LoadedModel, allow_other_model: bool = False) -> SteeringVector:
    """A Studio vector from a GGUF control vector, for the model `lm`.

    Args:
        path: the .gguf file.
        lm: the target model (its width and layers are checked, its layer norms measured).
        allow_other_model: accept a model hint of another architecture (the width must still fit).

    Returns:
        A SteeringVector whose meta records the provenance ("imported from ..."). A file written by `grains export`
        for this same model comes back as it was (its directions to float32 precision, its norms and settings).

    Example:
        >>> vector = import_control_vector("happy.gguf", lm)
        >>> vector.meta["provenance"]
        'imported from happy.gguf (llama.cpp/repeng/other, model hint gemma3)'
    """
    from grains.adapters import text_config
    from grains.vectors import SteeringVector

    cv = read_control_vector(path)
    model_type = str(getattr(text_config(lm.model.config), "model_type", "") or lm.model.config.model_type)
    _check_target(cv, lm, model_type, allow_other_model)
    directions = {k: torch.from_numpy(v.copy()) for k, v in cv.directions.items()}
    provenance = f"imported from {cv.path.name} ({cv.writer}, model hint {cv.model_hint})"
    own = cv.grains_metadata
    if own is not None and own.get("model_id") == lm.model_id and int(own.get("hidden_size", -1)) == lm.hidden_size:
        norms = {int(k): float(v) for k, v in own["layer_norms"].items()}
        meta = {**dict(own.get("meta") or {}), "provenance": provenance}
        return SteeringVector(
            directions={k: d / d.norm().clamp_min(1e-12) for k, d in directions.items()}, layer_norms=norms,
            model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers,
            method=str(own.get("method", "imported")), k=own.get("k"), n_examples=int(own.get("n_examples", 0)),
            default_layer=own.get("default_layer") if own.get("default_layer") in directions else min(directions),
            default_strength=float(own.get("default_strength") or 0.0), meta=meta)
    norms = median_layer_norms(lm)
    relative = {k: float(d.norm()) / norms[k] if norms[k] > 0 else 0.0 for k, d in directions.items()}
    layer = max(directions, key=lambda k: relative[k])
    meta = {"provenance": provenance, "model_type": model_type, "source_model_hint": cv.model_hint,
            "source_layer_count": cv.layer_count,
            "engine_scale_1_strength": {str(k): v for k, v in relative.items()},
            "note": "Layer norms measured on this model (median token norm over neutral prompts); the suggested "
                    "strength is what the engine's scale 1 adds at the suggested layer."}
    from grains.steering import MAX_STRENGTH

    if relative[layer] > MAX_STRENGTH:
        meta["note"] += (f" The engine's scale 1 is strength {relative[layer]:.3g} here, beyond the Studio's range: "
                         f"the suggestion is capped at {MAX_STRENGTH:g}.")
    return SteeringVector(
        directions={k: d / d.norm().clamp_min(1e-12) for k, d in directions.items()}, layer_norms=norms,
        model_id=lm.model_id, hidden_size=lm.hidden_size, num_layers=lm.num_layers, method="imported",
        n_examples=0, default_layer=layer, default_strength=min(relative[layer], MAX_STRENGTH), meta=meta)
