"""Aggregation of ablation deltas on synthetic data: PCA sign alignment, mean, v+ alone, CAA, single example."""

import pytest
import torch

from grains.ablation import ExampleDeltas
from grains.aggregate import ACCEPTED_METHODS, METHODS, aggregate, first_component, layer_norms, resolve_method
from grains.errors import InputError

L, D = 3, 8


def _example(d_plus: torch.Tensor, d_minus: torch.Tensor, caa: torch.Tensor | None = None,
             norms: torch.Tensor | None = None) -> ExampleDeltas:
    return ExampleDeltas(d_plus=d_plus, d_minus=d_minus, caa=caa if caa is not None else torch.zeros(L, D),
                         norms=norms if norms is not None else torch.ones(L))


def _synthetic(n: int = 10, seed: int = 0) -> list[ExampleDeltas]:
    """d+ spread along +e0 with offset along e1; d- spread along e2; small noise."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        plus = 0.05 * torch.randn(2, L, D, generator=g)
        minus = 0.05 * torch.randn(2, L, D, generator=g)
        plus[..., 0] += 1.0 + torch.rand(2, L, generator=g) * 3
        plus[..., 1] += 0.5
        minus[..., 2] += -(1.0 + torch.rand(2, L, generator=g) * 3)
        out.append(_example(plus, minus, caa=torch.randn(L, D, generator=g)))
    return out


def test_methods_are_all_listed():
    assert set(METHODS) == {"grains", "pca", "caa", "plus", "pca_plus"}  # one name per computation
    assert set(ACCEPTED_METHODS) == set(METHODS) | {"mean"}
    assert resolve_method("mean") == "grains" and resolve_method("pca") == "pca"
    with pytest.raises(InputError, match="Unknown method"):
        resolve_method("median")


def test_first_component_sign_agrees_with_mean():
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        direction = torch.randn(D, generator=g)
        scale = 1.0 + 3 * torch.rand(30, 1, generator=g)
        rows = scale * direction + 0.01 * torch.randn(30, D, generator=g)
        pc = first_component(rows)
        assert torch.dot(pc, rows.mean(dim=0)) > 0, trial
        assert torch.isclose(pc.norm(), torch.tensor(1.0))
        flipped = first_component(-rows)
        assert torch.dot(flipped, -rows.mean(dim=0)) > 0


def test_pca_directions_agree_with_the_means():
    deltas = _synthetic()
    pca = aggregate(deltas, "pca")
    mean = aggregate(deltas, "mean")
    for layer in range(L):
        assert torch.nn.functional.cosine_similarity(pca[layer], mean[layer], dim=0) > 0.5
        assert pca[layer][0] > 0 and pca[layer][2] > 0  # +PC1(d+) along e0, -PC1(d-) along +e2


def test_mean_is_mean_plus_minus_mean_minus():
    deltas = _synthetic()
    out = aggregate(deltas, "mean")
    plus = torch.cat([d.d_plus for d in deltas])
    minus = torch.cat([d.d_minus for d in deltas])
    for layer in range(L):
        torch.testing.assert_close(out[layer], plus[:, layer].mean(0) - minus[:, layer].mean(0))


def test_plus_alone_and_pca_plus():
    deltas = _synthetic()
    plus = torch.cat([d.d_plus for d in deltas])
    out = aggregate(deltas, "plus")
    pc = aggregate(deltas, "pca_plus")
    for layer in range(L):
        torch.testing.assert_close(out[layer], plus[:, layer].mean(0))
        torch.testing.assert_close(pc[layer], first_component(plus[:, layer]))
        assert torch.dot(pc[layer], out[layer]) > 0


def test_grains_is_the_mean_of_the_deltas_and_mean_is_its_alias():
    deltas = _synthetic()
    a, b = aggregate(deltas, "grains"), aggregate(deltas, "mean")
    plus = torch.cat([d.d_plus for d in deltas])
    minus = torch.cat([d.d_minus for d in deltas])
    for layer in range(L):
        torch.testing.assert_close(a[layer], plus[:, layer].mean(0) - minus[:, layer].mean(0))
        assert torch.equal(a[layer], b[layer])


def test_caa_is_the_mean_difference():
    deltas = _synthetic()
    out = aggregate(deltas, "caa")
    expected = torch.stack([d.caa for d in deltas]).mean(0)
    for layer in range(L):
        torch.testing.assert_close(out[layer], expected[layer])


def test_caa_deltas_without_ablation_shifts():
    only_caa = [ExampleDeltas(None, None, torch.ones(L, D), torch.ones(L))]
    assert torch.equal(aggregate(only_caa, "caa")[0], torch.ones(D))
    with pytest.raises(InputError):
        aggregate(only_caa, "mean")


@pytest.mark.parametrize("method", ["grains", "pca", "mean", "plus", "pca_plus", "caa"])
def test_single_example(method):
    plus = torch.zeros(1, L, D)
    minus = torch.zeros(1, L, D)
    plus[..., 0] = 2.0
    minus[..., 1] = 3.0
    one = [_example(plus, minus, caa=torch.full((L, D), 0.5))]
    out = aggregate(one, method)
    assert sorted(out) == list(range(L))
    for vec in out.values():
        assert torch.isfinite(vec).all() and vec.norm() > 0
    if method in ("pca", "pca_plus"):  # one row: the row's own unit direction
        expected = torch.zeros(D)
        expected[0] = 1.0
        if method == "pca":
            expected[1] = -1.0
        torch.testing.assert_close(out[0], expected)


def test_errors():
    with pytest.raises(InputError):
        aggregate([], "mean")
    with pytest.raises(InputError):
        aggregate(_synthetic(2), "nope")


def test_layer_norms_median():
    deltas = [_example(torch.zeros(2, L, D), torch.zeros(2, L, D), norms=torch.tensor([1.0, 2.0, 3.0]) * s)
              for s in (1.0, 2.0, 10.0)]
    assert layer_norms(deltas) == {0: 2.0, 1: 4.0, 2: 6.0}
