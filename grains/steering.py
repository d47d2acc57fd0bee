"""Adding a steering vector at inference: a forward hook on decoder layers, removed on every path.

At layer l and every token position: h' = h + lambda * m_l * v_l/|v_l|, then h'' = h' * |h| / |h'| (norms over the
hidden dimension, per token), so each token's representation keeps its length. Works for decoder layers that
return a tensor (transformers 5) or a tuple, at every decoded token under a KV cache, and only on the batch rows
selected by `rows`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from grains.errors import InputError
from grains.vectors import SteeringVector

MAX_STRENGTH = 20.0


def check_strength(strength: float) -> float:
    """Strength must be a finite number from 0 to MAX_STRENGTH (in units of the layer's median hidden norm)."""
    try:
        value = float(strength)
    except (TypeError, ValueError) as exc:
        raise InputError("The steering strength must be a number.") from exc
    if not math.isfinite(value):
        raise InputError("The steering strength must be a finite number, not NaN or infinity.")
    if value < 0:
        raise InputError("The steering strength must be 0 or more; to steer the other way, swap chosen and rejected.")
    if value > MAX_STRENGTH:
        raise InputError(f"The steering strength must be at most {MAX_STRENGTH:g}.")
    return value


def check_layers(
    layers: int | Sequence[int] | None, num_layers: int, vector: SteeringVector | None = None
) -> list[int]:
    """Normalise a layer or list of layers, defaulting to the vector's suggested layer."""
    if layers is None:
        if vector is None or vector.default_layer is None:
            raise InputError("No layer given and the vector suggests none.")
        layers = vector.default_layer
    items = [layers] if isinstance(layers, int | float) else list(layers)
    out = []
    for item in items:
        if isinstance(item, float):
            if not math.isfinite(item) or not item.is_integer():
                raise InputError("The layer must be a whole number.")
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise InputError("The layer must be a whole number.")
        if not 0 <= item < num_layers:
            raise InputError(f"Layer {item} is out of range: this model has layers 0 to {num_layers - 1}.")
        out.append(item)
    if not out:
        raise InputError("No layer given.")
    return sorted(set(out))


def steer_hidden(h: torch.Tensor, add: torch.Tensor, normalize: bool = True,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """h + add, rescaled per token to |h| when `normalize`; rows outside the bool mask `rows` are left as they are."""
    work = h.float()
    steered = work + add.to(device=h.device, dtype=torch.float32)
    if normalize:
        steered = steered * (work.norm(dim=-1, keepdim=True) / steered.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    steered = steered.to(h.dtype)
    if rows is not None:
        mask = rows.to(h.device).view(-1, *([1] * (h.dim() - 1)))
        steered = torch.where(mask, steered, h)
    return steered


def _make_hook(add: torch.Tensor, normalize: bool, rows: torch.Tensor | None):
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return steer_hidden(output, add, normalize, rows)
        # Older layers return (hidden, ...): replace the first element, never edit it in place.
        return (steer_hidden(output[0], add, normalize, rows), *output[1:])

    return hook


@contextmanager
def steer(
    lm: Any,
    vector: SteeringVector,
    layers: int | Sequence[int] | None = None,
    strength: float | None = None,
    rows: Sequence[bool] | None = None,
    normalize: bool = True,
) -> Iterator[None]:
    """Context manager: steer `lm` with `vector` at `layers` (default: the vector's suggested layer) and `strength`
    (default: the vector's). `rows` limits steering to the True rows of each batch. Hooks come off on every path."""
    vector.check_fits(vector.model_id, lm.hidden_size, lm.num_layers, allow_other_model=True)
    chosen_layers = check_layers(layers, lm.num_layers, vector)
    value = check_strength(vector.default_strength if strength is None else strength)
    row_mask = torch.tensor(list(rows), dtype=torch.bool) if rows is not None else None
    handles = []
    try:
        for layer in chosen_layers:
            add = vector.scaled(layer, value)
            handles.append(lm.adapter.layers[layer].register_forward_hook(_make_hook(add, normalize, row_mask)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def active_hook_count(lm: Any) -> int:
    """Forward hooks currently on the decoder layers (0 when nothing is steering)."""
    return sum(len(layer._forward_hooks) for layer in lm.adapter.layers)
