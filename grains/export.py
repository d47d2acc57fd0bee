"""Export a steering vector as a GGUF control vector, the file llama.cpp, EasySteer (vLLM) and repeng read.

The layout (llama.cpp's `common_control_vector_load_one` and cvector-generator, repeng's `export_gguf`):
`general.architecture = "controlvector"`, `controlvector.model_hint` (the model's architecture, e.g. `gemma3`),
`controlvector.layer_count` (the number of direction tensors in the file) and one F32 1-D tensor `direction.k` of the
model's width per steered layer. An engine adds `scale * direction.k` to the output of decoder block k (0-based) at
every position; llama.cpp rejects k = 0.

Scale convention (one rule everywhere: files, CLI, app, docs): `direction.k` holds ONE UNIT of Studio strength at
layer k, m_k * v_k / |v_k| (m_k: the layer's median hidden-state norm), so an engine's scale equals the Studio's
strength: `--control-vector-scaled v.gguf:0.3` adds what the Studio adds at strength 0.3 with the norm rescale off.
GrAInS's own metadata rides along under `grains.*` keys (ignored by the engines) so `import` restores the vector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grains.errors import InputError, VectorError

if TYPE_CHECKING:
    from grains.vectors import SteeringVector

ARCHITECTURE = "controlvector"
KEY_MODEL_HINT = f"{ARCHITECTURE}.model_hint"
KEY_LAYER_COUNT = f"{ARCHITECTURE}.layer_count"
KEY_GRAINS_VECTOR = "grains.vector"  # the SteeringVector's JSON metadata (what `import` restores)
KEY_SCALE_UNIT = "grains.scale_unit"
SCALE_UNIT = ("direction.k = 1 unit of GrAInS strength at layer k (the layer's median hidden-state norm times the unit "
              "direction): an engine's scale equals the Studio's strength, with no per-token norm rescale")
UNSAFE_PATH_CHARACTERS = (",", ":")  # llama.cpp splits --control-vector-scaled on them


def model_hint(model_type: str) -> str:
    """The `controlvector.model_hint` for a transformers model type: llama.cpp's architecture name when there is one
    (`gemma3_text` -> `gemma3`), else the type itself.

    Args:
        model_type: `config.model_type` (or an architecture name).

    Returns:
        A non-empty hint; an empty type raises VectorError (GGUFWriter.add_string silently drops empty strings and
        repeng refuses a file without the key).

    Example:
        >>> model_hint("gemma3_text")
        'gemma3'
    """
    import gguf

    name = (model_type or "").strip().lower()
    if not name:
        raise VectorError("The model's type is unknown, so the control vector would carry no model hint.")
    known = set(gguf.MODEL_ARCH_NAMES.values())
    if name in known:
        return name
    for suffix in ("_text", "_causal_lm", "_for_causal_lm"):
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return name


def same_model_family(hint_a: str, hint_b: str) -> bool:
    """Whether two model hints name the same architecture (`gemma3` and `gemma3_text` do).

    Args:
        hint_a: one hint or model type.
        hint_b: the other.

    Returns:
        True when they normalise to the same name.

    Example:
        >>> same_model_family("gemma3", "gemma3_text")
        True
    """
    return model_hint(hint_a) == model_hint(hint_b)


def check_export_layers(vector: SteeringVector, layers: list[int] | None) -> list[int]:
    """The layers to write: the ones asked for (default: the vector's suggested layer), each one the vector has and
    an engine can steer (llama.cpp rejects block 0).

    Args:
        vector: the steering vector.
        layers: the layers asked for, or None.

    Returns:
        Sorted distinct layers; anything an engine cannot take raises InputError with one sentence.

    Example:
        >>> check_export_layers(vector, [9])
        [9]
    """
    if layers is None or len(layers) == 0:
        if vector.default_layer is None:
            raise InputError("The vector suggests no layer: pass the layers to export (e.g. --layers 9).")
        layers = [vector.default_layer]
    chosen = sorted({int(layer) for layer in layers})
    if 0 in chosen:
        raise InputError("llama.cpp cannot steer layer 0 (it rejects direction.0, block 0's output): export layers "
                         f"1 to {vector.num_layers - 1}.")
    for layer in chosen:
        if not 0 < layer < vector.num_layers:
            raise InputError(f"Layer {layer} is out of range: this vector's model has layers 1 to "
                             f"{vector.num_layers - 1} that an engine can steer.")
        vector.check_layer(layer)
    return chosen


def check_export_path(path: str | Path) -> Path:
    """The output path, refused when llama.cpp's `FNAME:SCALE,...` argument could not carry it.

    Args:
        path: where to write the .gguf file.

    Returns:
        The path (with a .gguf suffix).

    Example:
        >>> check_export_path("v.gguf").name
        'v.gguf'
    """
    out = Path(path)
    if out.suffix != ".gguf":
        out = out.with_suffix(".gguf")
    bad = [c for c in UNSAFE_PATH_CHARACTERS if c in str(out)]
    if bad:
        raise InputError(f"The output path contains {bad[0]!r}, which llama.cpp's --control-vector-scaled "
                         "FNAME:SCALE argument cannot carry: choose a path without ',' or ':'.")
    return out


def unit_strength_directions(vector: SteeringVector, layers: list[int]) -> dict[int, np.ndarray]:
    """Per layer, what strength 1 adds in the Studio: m_k * v_k / |v_k| as float32 (zeros for a zero direction).

    Args:
        vector: the steering vector.
        layers: checked layers.

    Returns:
        {layer: float32 array [hidden_size]}.
    """
    return {layer: vector.scaled(layer, 1.0).detach().float().cpu().numpy().astype(np.float32) for layer in layers}


@dataclass
class GGUFExport:
    """What `export_gguf` wrote.

    Args:
        path: the .gguf file.
        layers: the layers written (`direction.k` for each k).
        model_hint: the `controlvector.model_hint` value.
        hidden_size: the tensors' length.
        strength: the suggested engine scale (= the Studio strength it reproduces).
        norms: {layer: |direction.k|}, the median hidden-state norm of the layer.
    """

    path: Path
    layers: list[int]
    model_hint: str
    hidden_size: int
    strength: float
    norms: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"path": str(self.path), "layers": self.layers, "model_hint": self.model_hint,
                "hidden_size": self.hidden_size, "strength": self.strength,
                "direction_norms": {str(k): v for k, v in self.norms.items()}, "scale_unit": SCALE_UNIT}


def export_gguf(vector: SteeringVector, path: str | Path, layers: list[int] | None = None,
                strength: float | None = None, model_type: str | None = None) -> GGUFExport:
    """Write `vector` as a GGUF control vector (see the module docstring for the layout and the scale convention).

    Args:
        vector: the steering vector.
        path: the .gguf file to write (no ',' or ':' in it: llama.cpp's argument could not carry them).
        layers: the layers to write (default: the vector's suggested layer); layer 0 is refused.
        strength: the engine scale to suggest (default: the vector's suggested strength); the file itself holds one
            unit of strength, so this only goes into the metadata and the printed commands.
        model_type: the model's `config.model_type` (default: the one recorded in the vector's metadata).

    Returns:
        A GGUFExport describing the file.

    Example:
        >>> written = export_gguf(grains.load_vector("assets/default_vector.safetensors"), "v.gguf")
        >>> written.layers
        [12]
    """
    import gguf

    from grains.steering import check_strength

    chosen = check_export_layers(vector, layers)
    out = check_export_path(path)
    value = check_strength(vector.default_strength if strength is None else strength)
    kind = model_type or str(vector.meta.get("model_type") or "")
    if not kind:
        raise VectorError("The vector does not record its model's type: pass the model (--model) so the file can "
                          "carry llama.cpp's model hint.")
    hint = model_hint(kind)
    tensors = unit_strength_directions(vector, chosen)
    meta = vector.metadata()
    meta["meta"] = {**meta["meta"], "model_type": kind}
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), ARCHITECTURE)
    writer.add_string(KEY_MODEL_HINT, hint)
    writer.add_uint32(KEY_LAYER_COUNT, len(tensors))
    writer.add_string(KEY_SCALE_UNIT, SCALE_UNIT)
    writer.add_float32("grains.strength", value)
    writer.add_string(KEY_GRAINS_VECTOR, json.dumps(meta))
    for layer, array in tensors.items():
        writer.add_tensor(f"direction.{layer}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GGUFExport(path=out, layers=chosen, model_hint=hint, hidden_size=vector.hidden_size, strength=value,
                      norms={layer: float(np.linalg.norm(a)) for layer, a in tensors.items()})
