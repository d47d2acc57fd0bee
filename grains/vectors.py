"""Steering vectors: per-layer directions with their metadata, saved as safetensors (+ a JSON sidecar).

Strength unit: a vector is applied as h + lambda * m_l * v_l / |v_l|, where m_l is the median hidden-state norm of
layer l measured while building. So lambda = 0.5 adds half a typical hidden state's length before the per-token norm
is restored; the same lambda means the same thing on every model and layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grains import __version__
from grains.errors import VectorError

FORMAT = "grains-steering-vector/1"
CANCELLED_BELOW = 0.05  # |v+ - v-| / (|v+| + |v-|) under this: the direction nearly cancelled
TINY_RELATIVE_NORM = 0.001  # |v| / m_l under this: a tiny raw direction
MAX_VECTOR_BYTES = 512 * 1024 * 1024


@dataclass
class SteeringVector:
    """Per-layer steering directions for one model, with what built them and the suggested layer and strength.
    Saved as safetensors + JSON metadata (`save`), read back with `load_vector`.

    Args:
        directions: {layer: unit direction [hidden_size]}.
        layer_norms: {layer: median hidden-state norm}, the unit of strength.
        model_id: the model it was built for.
        hidden_size: its hidden size.
        num_layers: its number of decoder layers.
        method: how it was aggregated ("grains", "pca", "caa", ...).
        k: top-k tokens per side (None for CAA).
        n_examples: examples it was built from.
        default_layer: the suggested layer (cross-validated when the build selected one).
        default_strength: the suggested strength.
        meta: anything else (selection figures, side effects, provenance).

    Example:
        >>> built = grains.build_vector(lm, pairs)
        >>> path = built.vector.save("truthful.safetensors")
        >>> grains.load_vector(path).default_layer == built.vector.default_layer
        True
    """

    directions: dict[int, torch.Tensor]
    layer_norms: dict[int, float]
    model_id: str
    hidden_size: int
    num_layers: int
    method: str = "grains"
    k: int | None = None
    n_examples: int = 0
    default_layer: int | None = None
    default_strength: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for layer, vec in self.directions.items():
            if vec.dim() != 1 or vec.shape[0] != self.hidden_size:
                raise VectorError(
                    f"Layer {layer}'s vector has shape {tuple(vec.shape)}, expected ({self.hidden_size},)."
                )
            if not torch.isfinite(vec).all():
                raise VectorError(f"Layer {layer}'s vector has NaN or infinite values.")

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    def check_layer(self, layer: int) -> None:
        """Raise VectorError unless this vector has a direction and a typical hidden-state norm for `layer`."""
        if layer not in self.directions:
            raise VectorError(f"This vector has no direction for layer {layer} (it has {self.layers}).")
        if layer not in self.layer_norms:
            raise VectorError(f"This vector has no hidden-state norm for layer {layer}, so its strength has no unit "
                              "there; rebuild the vector.")

    def scaled(self, layer: int, strength: float) -> torch.Tensor:
        """lambda * m_l * unit(v_l): what the hook adds before restoring the norm."""
        self.check_layer(layer)
        vec = self.directions[layer].float()
        norm = float(vec.norm())
        if norm == 0.0 or strength == 0.0:
            return torch.zeros_like(vec)
        return vec / norm * (strength * self.layer_norms[layer])

    @property
    def direction_stats(self) -> dict[int, dict[str, float]]:
        """Per layer, what the direction is made of (stored while building): `raw_norm` |v|, `relative_norm`
        |v| / m_l, and for ablation methods `plus_norm` |v+|, `minus_norm` |v-|, `cosine_plus_minus` and
        `cancellation` |v+ - v-| / (|v+| + |v-|) (near 0: the two shifts nearly cancelled)."""
        raw = self.meta.get("direction_stats") or {}
        return {int(k): dict(v) for k, v in raw.items()}

    def warnings(self, layers: list[int] | None = None) -> list[str]:
        """Plain warnings about the direction at `layers` (default: the suggested layer): a direction that nearly
        cancelled, or one that is tiny next to the layer's hidden states."""
        stats = self.direction_stats
        chosen = layers if layers is not None else ([self.default_layer] if self.default_layer is not None else [])
        out = []
        for layer in chosen:
            info = stats.get(layer)
            if not info:
                continue
            cancel = info.get("cancellation")
            if cancel is not None and cancel < CANCELLED_BELOW:
                out.append(f"Layer {layer}: v+ and v- nearly cancelled (|v+ - v-| is {cancel:.1%} of |v+| + |v-|, "
                           f"cosine {info.get('cosine_plus_minus', float('nan')):.3f}); the direction is mostly "
                           "noise, however strongly it is applied.")
            rel = info.get("relative_norm")
            if rel is not None and rel < TINY_RELATIVE_NORM:
                out.append(f"Layer {layer}: the raw direction is tiny ({rel:.2%} of a typical hidden state); the "
                           "steering strength rescales it, so check its effect rather than trusting its size.")
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "library_version": __version__, "model_id": self.model_id,
            "hidden_size": self.hidden_size, "num_layers": self.num_layers, "layers": self.layers,
            "layer_norms": {str(k): v for k, v in self.layer_norms.items()}, "method": self.method, "k": self.k,
            "n_examples": self.n_examples, "default_layer": self.default_layer,
            "default_strength": self.default_strength, "strength_unit": "median hidden-state norm of the layer",
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write `path` (.safetensors, metadata embedded) and a readable `path.json` beside it."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        tensors = {f"layer.{layer}": vec.detach().float().cpu().contiguous() for layer, vec in self.directions.items()}
        save_file(tensors, str(path), metadata={"grains": json.dumps(meta)})
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    def export_gguf(self, path: str | Path, layers: list[int] | None = None, strength: float | None = None,
                    model_type: str | None = None) -> Any:
        """Write a GGUF control vector for llama.cpp, EasySteer and repeng (see grains.export): `direction.k` holds
        one unit of strength at layer k, so the engines' scale equals the Studio's strength (rescale off).

        Args:
            path: the .gguf file.
            layers: the layers to write (default: the suggested layer; layer 0 is refused).
            strength: the suggested engine scale (default: the vector's suggested strength).
            model_type: the model's `config.model_type`, for `controlvector.model_hint`.

        Returns:
            A grains.export.GGUFExport.
        """
        from grains.export import export_gguf

        return export_gguf(self, path, layers=layers, strength=strength, model_type=model_type)

    def check_fits(self, model_id: str, hidden_size: int, num_layers: int, allow_other_model: bool = False) -> None:
        """Raise VectorError when this vector was built for another model."""
        if self.hidden_size != hidden_size:
            raise VectorError(f"This vector was built for {self.model_id!r} (hidden size {self.hidden_size}); "
                              f"the loaded model has hidden size {hidden_size}.")
        if max(self.layers, default=-1) >= num_layers:
            raise VectorError(f"This vector has layers up to {max(self.layers)}, but the model has {num_layers}.")
        if not allow_other_model and self.model_id != model_id:
            raise VectorError(f"This vector was built for {self.model_id!r}, not for {model_id!r}.")


def _looks_like_pickle(head: bytes) -> bool:
    return head[:1] == b"\x80" or head[:2] == b"PK" or head[:1] in (b"(", b"c", b"]", b"}")



def checked_file(path: str | Path, what: str, max_bytes: int) -> Path:
    """`path` as a Path once it names an existing file no larger than `max_bytes` (checked before any read).

    Args:
        path: the file.
        what: its kind in the message ("vector file", "control vector file").
        max_bytes: the size cap.

    Returns:
        The Path; a missing or oversized file raises VectorError with one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise VectorError(f"No {what} at {path}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise VectorError(f"The {what} is {size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    return path

def load_vector(path: str | Path) -> SteeringVector:
    """Read a vector saved by `SteeringVector.save`. Pickles and other formats are refused, never unpickled.

    Args:
        path: the `.safetensors` file (its `.json` metadata beside it).

    Returns:
        The SteeringVector; a missing, malformed or foreign file raises VectorError.

    Example:
        >>> vector = grains.load_vector("assets/default_vector.safetensors")
        >>> vector.method
        'caa'
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = checked_file(path, "vector file", MAX_VECTOR_BYTES)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
    if len(head) < 10:
        raise VectorError("The vector file is empty or truncated.")
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] != b"{" or header_len > size:
        if head[8:9] == b"{":
            raise VectorError("The vector file is truncated: its header is longer than the file.")
        if _looks_like_pickle(head):
            raise VectorError("This file looks like a pickle; only safetensors vectors are accepted (never unpickled).")
        raise VectorError("This is not a safetensors file.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw_meta = (fh.metadata() or {}).get("grains")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VectorError(f"The vector file is corrupt: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if raw_meta is None:
        raise VectorError("The safetensors file has no GrAInS metadata: it is not a steering vector saved by GrAInS.")
    try:
        meta = json.loads(raw_meta)
        if meta.get("format") != FORMAT:
            raise VectorError(f"Unknown vector format {meta.get('format')!r}.")
        directions = {}
        for name, tensor in tensors.items():
            if not name.startswith("layer."):
                raise VectorError(f"Unexpected tensor {name!r} in the vector file.")
            directions[int(name.split(".", 1)[1])] = tensor.float()
        layer_norms = {int(k): float(v) for k, v in meta["layer_norms"].items()}
        if any(not math.isfinite(v) or v < 0 for v in layer_norms.values()):
            raise VectorError("The vector's layer norms are not valid numbers.")
        strength = float(meta.get("default_strength") or 0.0)
        if not math.isfinite(strength):
            raise VectorError("The vector's default strength is not a finite number.")
        default_layer = meta.get("default_layer")
        return SteeringVector(
            directions=directions, layer_norms=layer_norms, model_id=str(meta["model_id"]),
            hidden_size=int(meta["hidden_size"]), num_layers=int(meta["num_layers"]),
            method=str(meta.get("method", "grains")), k=meta.get("k"), n_examples=int(meta.get("n_examples", 0)),
            default_layer=int(default_layer) if default_layer is not None else None,
            default_strength=strength, meta=dict(meta.get("meta") or {}),
        )
    except VectorError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise VectorError(f"The vector's metadata is missing or malformed ({exc!r}).") from exc
