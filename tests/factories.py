"""Test objects shared across modules: random steering vectors shaped for a loaded model, and the repository's
scripts as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
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


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` of this checkout as a module (scripts are not a package), for tests of their functions.

    Args:
        name: the script's file name without `.py`.

    Returns:
        The executed module.
    """
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
