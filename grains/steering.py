"""Adding a steering vector at inference: a checked `Steering` value and the forward hook it installs.

At layer l and every token position: h' = h + lambda * m_l * v_l/|v_l|, then h'' = h' * |h| / |h'| (norms over the
hidden dimension, per token), so each token's representation keeps its length. Works for decoder layers that
return a tensor (transformers 5) or a tuple, at every decoded token under a KV cache, and only on the batch rows
selected by `rows`. A negative lambda steers the other way (toward the rejected answers).

The hooks act only in the context that installed them (`local_forward_hooks`): on a model shared by a server's
threads, another job running at the same moment is not steered by this one (grains.local_hooks).

Every path that steers (generation, scoring, evaluation, sweeps, cross-validation) takes one `Steering`, created and
checked once, so all of them apply the same formula under the same model-compatibility rule:

    steering = Steering.create(lm, vector, layers=9, strength=0.3)
    with steering.apply(lm):
        ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from grains.errors import InputError
from grains.local_hooks import local_forward_hooks
from grains.vectors import SteeringVector

if TYPE_CHECKING:
    from grains.models import LoadedModel

MAX_STRENGTH = 4.0


def check_strength(strength: float) -> float:
    """Strength must be a finite number from -MAX_STRENGTH to MAX_STRENGTH (units: the layer's median hidden norm).

    A negative strength steers the other way: toward the rejected answers.

    Args:
        strength: lambda.

    Returns:
        The strength as a float; anything else raises InputError.

    Example:
        >>> check_strength(0.5)
        0.5
    """
    try:
        value = float(strength)
    except (TypeError, ValueError) as exc:
        raise InputError("The steering strength must be a number.") from exc
    if not math.isfinite(value):
        raise InputError("The steering strength must be a finite number, not NaN or infinity.")
    if abs(value) > MAX_STRENGTH:
        raise InputError(f"The steering strength must be from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g} (units of the "
                         "layer's median hidden-state norm; negative steers toward the rejected answers).")
    return value


def check_layers(
    layers: int | Sequence[int] | None, num_layers: int, vector: SteeringVector | None = None
) -> list[int]:
    """Normalise a layer or list of layers, defaulting to the vector's suggested layer.

    Args:
        layers: a layer, several, or None (the vector's suggested layer).
        num_layers: the model's decoder layers.
        vector: the vector whose suggestion fills in None.

    Returns:
        Sorted distinct layers; an out-of-range layer raises InputError.

    Example:
        >>> check_layers([3, 1], 4)
        [1, 3]
    """
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
    """h + add, rescaled per token to |h| when `normalize`; rows outside the bool mask `rows` are left as they are.

    Args:
        h: hidden states [B, T, D] (never edited in place).
        add: the scaled direction [D].
        normalize: keep each token's norm.
        rows: per batch row, whether to steer it (None: all).

    Returns:
        The steered hidden states, a new tensor.

    Example:
        >>> steer_hidden(torch.tensor([[[3.0, 4.0]]]), torch.tensor([5.0, 0.0]))  # |h| = 5 kept
        tensor([[[4.4721, 2.2361]]])
    """
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


def _hooked(lm: LoadedModel, adds: dict[int, torch.Tensor], normalize: bool,
            rows: Sequence[bool] | None) -> AbstractContextManager[None]:
    row_mask = torch.tensor(list(rows), dtype=torch.bool) if rows is not None else None
    return local_forward_hooks([(lm.adapter.layers[layer], _make_hook(add, normalize, row_mask))
                                for layer, add in adds.items()])


@dataclass(frozen=True)
class Steering:
    """A checked steering setting: which vector, at which layers, how strong, and whether norms are kept.

    Create it with `Steering.create` (which checks it against the model once); apply it with `apply`, a context
    manager whose hooks come off on every path. Strength 0 is the identity, exactly.

    Example:
        >>> steering = Steering.create(lm, vector, layers=9, strength=0.3)
        >>> with steering.apply(lm):
        ...     text = grains.generate_one(lm, "The weather today")

    Args:
        vector: the steering vector.
        layers: the layers steered.
        strength: lambda, in units of each layer's median hidden-state norm.
        normalize: restore each token's norm after adding the vector.
        allow_other_model: the vector may come from another model of the same shape.
    """

    vector: SteeringVector
    layers: tuple[int, ...]
    strength: float
    normalize: bool = True
    allow_other_model: bool = False

    @classmethod
    def create(cls, lm: LoadedModel, vector: SteeringVector, layers: int | Sequence[int] | None = None,
               strength: float | None = None, normalize: bool = True, allow_other_model: bool = False) -> Steering:
        """Check a vector, layers and strength against a model, once.

        Args:
            lm: the loaded model it will steer.
            vector: the steering vector.
            layers: a layer or layers (default: the vector's suggested layer).
            strength: lambda, in units of the layer's median hidden-state norm (default: the vector's suggestion).
            normalize: restore each token's norm after adding the vector.
            allow_other_model: accept a vector built for another model of the same shape.

        Returns:
            The checked Steering.
        """
        if not isinstance(vector, SteeringVector):
            raise InputError("No steering vector given.")
        vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=allow_other_model)
        chosen = check_layers(layers, lm.num_layers, vector)
        for layer in chosen:
            vector.check_layer(layer)
        value = check_strength(vector.default_strength if strength is None else strength)
        return cls(vector=vector, layers=tuple(chosen), strength=value, normalize=bool(normalize),
                   allow_other_model=allow_other_model)

    def at(self, lm: LoadedModel, layers: int | Sequence[int] | None = None, strength: float | None = None) -> Steering:
        """The same vector at other layers and/or strength, checked.

        Args:
            lm: the model.
            layers: new layers (default: these).
            strength: new strength (default: this one).

        Returns:
            A new Steering.
        """
        return Steering.create(lm, self.vector, self.layers if layers is None else layers,
                               self.strength if strength is None else strength, self.normalize,
                               self.allow_other_model)

    def with_normalize(self, normalize: bool) -> Steering:
        """The same setting with the keep-the-norm switch set."""
        return replace(self, normalize=bool(normalize))

    @property
    def is_identity(self) -> bool:
        """True at strength 0: the model's outputs are exactly the unsteered ones."""
        return self.strength == 0.0

    def additions(self) -> dict[int, torch.Tensor]:
        """What the hook adds at each layer before restoring the norm: lambda * m_l * v_l / |v_l|."""
        return {layer: self.vector.scaled(layer, self.strength) for layer in self.layers}

    def apply(self, lm: LoadedModel, rows: Sequence[bool] | None = None) -> AbstractContextManager[None]:
        """Context manager: steer `lm` while inside. `rows` limits steering to the True rows of each batch.

        Args:
            lm: the model (must fit the vector, as checked by `create`).
            rows: per batch row, whether to steer it (default: every row).

        Returns:
            A context manager; its hooks come off on every path, errors included.
        """
        self.vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=self.allow_other_model)
        return _hooked(lm, self.additions(), self.normalize, rows)

    def describe(self) -> str:
        """One line, e.g. "layer 9, strength +0.30 (norm kept)"."""
        where = ", ".join(str(la) for la in self.layers)
        return (f"layer{'s' if len(self.layers) > 1 else ''} {where}, strength {self.strength:+.2f}"
                f" ({'norm kept' if self.normalize else 'norm not kept'})")

    def to_dict(self) -> dict[str, Any]:
        """The setting as plain JSON-ready values."""
        return {"layers": list(self.layers), "strength": self.strength, "normalize": self.normalize,
                "vector_model_id": self.vector.model_id, "vector_method": self.vector.method}


SteeringLike = Steering | SteeringVector | None


def as_steering(lm: LoadedModel, steering: SteeringLike, layers: int | Sequence[int] | None = None,
                strength: float | None = None, normalize: bool = True,
                allow_other_model: bool = False) -> Steering | None:
    """One Steering from what a caller passed: a Steering (used as is, unless layers/strength are given), a vector
    with optional layers and strength, or None (unsteered).

    Args:
        lm: the model.
        steering: a Steering, a SteeringVector or None.
        layers: layers for a bare vector (default: its suggested layer), or to move a Steering.
        strength: strength for a bare vector (default: its suggestion), or to change a Steering's.
        normalize: keep the norm (bare vectors only).
        allow_other_model: accept a vector built for another model (bare vectors only).

    Returns:
        A checked Steering, or None.

    Example:
        >>> steering = as_steering(lm, vector, strength=0.2)
        >>> steering.layers == (vector.default_layer,)
        True
    """
    if steering is None:
        return None
    if isinstance(steering, Steering):
        return steering if layers is None and strength is None else steering.at(lm, layers, strength)
    return Steering.create(lm, steering, layers, strength, normalize, allow_other_model)


def steer(
    lm: LoadedModel,
    vector: SteeringVector,
    layers: int | Sequence[int] | None = None,
    strength: float | None = None,
    rows: Sequence[bool] | None = None,
    normalize: bool = True,
    allow_other_model: bool = False,
) -> AbstractContextManager[None]:
    """Context manager: steer `lm` with `vector` at `layers` (default: the vector's suggested layer) and `strength`
    (default: the vector's). Shorthand for `Steering.create(...).apply(lm, rows)`; hooks come off on every path.

    Args:
        lm: the model.
        vector: the steering vector (refused when built for another model, unless `allow_other_model`).
        layers: a layer or layers.
        strength: lambda in units of the layer's median hidden-state norm.
        rows: per batch row, whether to steer it.
        normalize: restore each token's norm.
        allow_other_model: accept a vector built for another model of the same shape.

    Returns:
        A context manager.

    Example:
        >>> with grains.steer(lm, vector, layers=9, strength=0.3):
        ...     text = grains.generate_one(lm, "The weather today")
    """
    return Steering.create(lm, vector, layers, strength, normalize, allow_other_model).apply(lm, rows)


def active_hook_count(lm: LoadedModel) -> int:
    """Forward hooks currently on the decoder layers (0 when nothing is steering).

    Args:
        lm: the model.

    Returns:
        The number of hooks.

    Example:
        >>> with grains.steer(lm, vector):
        ...     assert active_hook_count(lm) == 1
        >>> active_hook_count(lm)
        0
    """
    return sum(len(layer._forward_hooks) for layer in lm.adapter.layers)
