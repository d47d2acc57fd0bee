"""Per-example shifts into one direction per layer: the mean of the ablation deltas ("grains"), PCA, or CAA."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from grains.ablation import ExampleDeltas
from grains.errors import InputError

METHODS = ("grains", "pca", "caa", "plus", "pca_plus")
# "mean" names what "grains" computes (mean(d+) - mean(d-); docs/method_study.md has the measurements behind that
# choice). It stays accepted as an alias because the app's method menu, its API tests and saved vectors' metadata
# use it; it takes the same code path as "grains".
METHOD_ALIASES = {"mean": "grains"}
ACCEPTED_METHODS = METHODS + tuple(METHOD_ALIASES)


def resolve_method(method: str) -> str:
    """The canonical name of an aggregation method ("mean" is an alias of "grains").

    Args:
        method: one of ACCEPTED_METHODS.

    Returns:
        One of METHODS; an unknown name raises InputError listing them.

    Example:
        >>> resolve_method("mean")
        'grains'
    """
    if method in METHOD_ALIASES:
        return METHOD_ALIASES[method]
    if method not in METHODS:
        raise InputError(f"Unknown method {method!r}: use one of {', '.join(ACCEPTED_METHODS)}.")
    return method


def first_component(rows: torch.Tensor) -> torch.Tensor:
    """Unit first principal component of rows [N, D] (centred), its sign chosen to agree with the rows' mean.
    With a single row, the row's own direction.

    Args:
        rows: [N, D].

    Returns:
        A unit vector [D].

    Example:
        >>> first_component(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))
        tensor([1., 0.])
    """
    mean = rows.mean(dim=0)
    if rows.shape[0] < 2:
        return mean / mean.norm().clamp_min(1e-12)
    centred = rows - mean
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    pc = vh[0]
    if torch.dot(pc, mean) < 0:  # PCA's sign is arbitrary: point it the way the shifts actually go
        pc = -pc
    return pc


def aggregate(deltas: Sequence[ExampleDeltas], method: str) -> dict[int, torch.Tensor]:
    """One vector per layer from a set of examples' deltas.

    - "grains" (alias "mean"): mean(d+) - mean(d-) over both sequences of every example, the default (PC1 of d+
      and d- share the generic "something was removed" direction, so their difference nearly cancels; the means
      do not).
    - "caa":   mean over examples of h(s+) - h(s-)  (the baseline).
    - "pca":   PC1(d+) - PC1(d-), each sign-aligned with its mean (the reference's method).
    - "plus":  mean(d+) alone (v+ without subtracting v-).
    - "pca_plus": PC1(d+) alone, sign-aligned with its mean.

    Args:
        deltas: the examples' shifts (grains.ablation.ExampleDeltas).
        method: one of ACCEPTED_METHODS.

    Returns:
        {layer: direction [D]} (not normalised).

    Example:
        >>> directions = aggregate(deltas, "grains")
        >>> sorted(directions) == list(range(lm.num_layers))
        True
    """
    method = resolve_method(method)
    if not deltas:
        raise InputError("No examples to build a vector from.")
    if method == "caa":
        stacked = torch.stack([d.caa for d in deltas])  # [N, L, D]
        mean = stacked.mean(dim=0)
        return {layer: mean[layer] for layer in range(mean.shape[0])}
    if any(d.d_plus is None for d in deltas):
        raise InputError("These deltas have no ablation shifts (they were made for CAA).")
    plus = torch.cat([d.d_plus for d in deltas])  # [2N, L, D]
    minus = torch.cat([d.d_minus for d in deltas])
    out = {}
    for layer in range(plus.shape[1]):
        if method == "pca":
            out[layer] = first_component(plus[:, layer]) - first_component(minus[:, layer])
        elif method == "pca_plus":
            out[layer] = first_component(plus[:, layer])
        elif method == "plus":
            out[layer] = plus[:, layer].mean(dim=0)
        else:  # "grains"
            out[layer] = plus[:, layer].mean(dim=0) - minus[:, layer].mean(dim=0)
    return out


def layer_norms(deltas: Sequence[ExampleDeltas]) -> dict[int, float]:
    """Median over examples of each layer's median token norm: the unit of steering strength.

    Args:
        deltas: the examples' shifts (their `norms` [L]).

    Returns:
        {layer: median norm}.

    Example:
        >>> norms = layer_norms(deltas)
        >>> min(norms.values()) > 0
        True
    """
    norms = torch.stack([d.norms for d in deltas]).median(dim=0).values
    return {layer: float(norms[layer]) for layer in range(norms.shape[0])}


def direction_stats(deltas: Sequence[ExampleDeltas], method: str, directions: dict[int, torch.Tensor],
                    norms: dict[int, float]) -> dict[int, dict[str, float]]:
    """What each layer's direction is made of, before it is unit-normalised for steering.

    Args:
        deltas: the examples' shifts.
        method: the aggregation method used.
        directions: the aggregated direction per layer.
        norms: the layer's median hidden-state norm m_l (the strength unit).

    Returns:
        Per layer: `raw_norm` |v| and `relative_norm` |v| / m_l; for the ablation methods also `plus_norm` and
        `minus_norm` (the norms of v+ and v-, as aggregated), `cosine_plus_minus` and `cancellation`
        |v+ - v-| / (|v+| + |v-|), near 0 when the two shifts nearly cancel.

    Example:
        >>> directions = aggregate(deltas, "grains")
        >>> direction_stats(deltas, "grains", directions, layer_norms(deltas))[9]["cancellation"]
    """
    out: dict[int, dict[str, float]] = {}
    resolved = resolve_method(method)
    has_ablation = resolved != "caa" and all(d.d_plus is not None for d in deltas)
    plus = torch.cat([d.d_plus for d in deltas]) if has_ablation else None
    minus = torch.cat([d.d_minus for d in deltas]) if has_ablation else None
    for layer, vec in directions.items():
        raw = float(vec.float().norm())
        info = {"raw_norm": raw, "relative_norm": raw / max(norms.get(layer, 0.0), 1e-12)}
        if plus is not None and minus is not None:
            if resolved in ("pca", "pca_plus"):
                vp, vm = first_component(plus[:, layer]), first_component(minus[:, layer])
            else:
                vp, vm = plus[:, layer].mean(dim=0), minus[:, layer].mean(dim=0)
            np_, nm = float(vp.norm()), float(vm.norm())
            info.update(plus_norm=np_, minus_norm=nm,
                        cosine_plus_minus=float(torch.dot(vp, vm) / max(np_ * nm, 1e-24)),
                        cancellation=float((vp - vm).norm()) / max(np_ + nm, 1e-24))
        out[layer] = info
    return out
