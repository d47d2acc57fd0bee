"""Test objects shared across modules: random steering vectors shaped for a loaded model."""

from __future__ import annotations

from typing import Any

import torch

from grains.vectors import SteeringVector


def random_vector(lm: Any, seed: int = 0, strength: float = 1.0, layer: int = 1, norm: float = 3.0,
                  **meta: Any) -> SteeringVector:
    """A vector with a seeded random direction at every layer of `lm`, each layer's norm `norm`.

    Args:
        lm: the loaded model the vector is for.
        seed: the torch generator seed.
        strength: the suggested strength.
        layer: the suggested layer.
        norm: every layer's recorded raw direction norm.
        meta: other SteeringVector fields (method, k, n_examples, ...).

    Returns:
        The SteeringVector.
    """
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector(
        directions={i: torch.randn(lm.hidden_size, generator=gen) for i in range(lm.num_layers)},
        layer_norms={i: norm for i in range(lm.num_layers)}, model_id=lm.model_id, hidden_size=lm.hidden_size,
        num_layers=lm.num_layers, default_layer=layer, default_strength=strength, **meta,
    )
