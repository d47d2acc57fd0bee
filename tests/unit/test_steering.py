"""Steering hooks: identity at strength 0, per-token norm preserved, row selection, tuple outputs, hooks removed."""

import pytest
import torch

from grains.errors import InputError, VectorError
from grains.models import load_model
from grains.steering import Steering, _make_hook, active_hook_count, as_steering, steer, steer_hidden
from tests.factories import random_vector
from tests.reference_impl import reference_steer


@pytest.fixture(scope="module", params=["tiny-random-llama", "tiny-random-gemma3-text", "tiny-random-qwen2"])
def lm(request):
    return load_model(request.param)


def logits(lm, text="Q: Is the sky blue?\nA:"):
    ids = lm.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_strength_zero_is_exact_identity(lm):
    vector = random_vector(lm)
    plain = logits(lm)
    with steer(lm, vector, layers=[0, 1, 2], strength=0.0):
        steered = logits(lm)
    assert torch.equal(plain, steered)


def test_steering_changes_the_output(lm):
    vector = random_vector(lm)
    plain = logits(lm)
    with steer(lm, vector, layers=1, strength=1.0):
        steered = logits(lm)
    assert (plain - steered).abs().max() > 1e-3


def test_norm_is_preserved_per_token():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 16) * torch.arange(1, 6).view(1, 5, 1)  # tokens with very different norms
    add = torch.randn(16) * 4
    out = steer_hidden(h, add)
    torch.testing.assert_close(out.norm(dim=-1), h.norm(dim=-1))
    torch.testing.assert_close(out, reference_steer(h, add))
    # the direction really moved toward the vector
    cos_before = torch.nn.functional.cosine_similarity(h, add.expand_as(h), dim=-1)
    cos_after = torch.nn.functional.cosine_similarity(out, add.expand_as(h), dim=-1)
    assert (cos_after > cos_before).all()


def test_only_selected_rows_are_steered():
    h = torch.randn(2, 4, 8)
    out = steer_hidden(h, torch.ones(8) * 5, rows=torch.tensor([False, True]))
    assert torch.equal(out[0], h[0])  # not just row 0 of an in-place edit: row 0 untouched, row 1 moved
    assert not torch.allclose(out[1], h[1])


def test_tuple_outputs_are_handled(lm):
    """Older decoder layers return (hidden, ...): the hook must replace element 0 for every row."""
    vector = random_vector(lm)
    x = torch.randn(2, 3, lm.hidden_size)
    hook = _make_hook(vector.scaled(1, 1.0), True, None)
    res = hook(lm.adapter.layers[1], (x,), (x, "extra"))
    assert isinstance(res, tuple) and res[1] == "extra"
    assert not torch.allclose(res[0][0], x[0]) and not torch.allclose(res[0][1], x[1])  # both rows steered
    torch.testing.assert_close(res[0].norm(dim=-1), x.norm(dim=-1))
    assert not torch.equal(res[0], x)


def test_hooks_removed_after_an_exception(lm):
    vector = random_vector(lm)
    plain = logits(lm)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(lm, vector, layers=[1, 2], strength=2.0):
            assert active_hook_count(lm) == 2
            raise RuntimeError("boom")
    assert active_hook_count(lm) == 0
    assert torch.equal(logits(lm), plain)


def test_hooks_removed_when_a_forward_fails_inside(lm):
    vector = random_vector(lm)
    with pytest.raises(IndexError):
        with steer(lm, vector, layers=1, strength=1.0):
            lm.model(input_ids=torch.tensor([[10**7]]))  # out-of-vocabulary id fails inside the model
    assert active_hook_count(lm) == 0


@pytest.mark.parametrize("strength, message", [
    (float("nan"), "finite"), (float("inf"), "finite"), (-5.0, "from -4 to 4"), (1000.0, "from -4 to 4"),
    ("abc", "number"),
])
def test_bad_strength(lm, strength, message):
    with pytest.raises(InputError, match=message):
        with steer(lm, random_vector(lm), layers=1, strength=strength):
            pass
    assert active_hook_count(lm) == 0


@pytest.mark.parametrize("layer", [-1, 99, 1.5, float("nan")])
def test_bad_layer(lm, layer):
    with pytest.raises(InputError, match="(out of range|whole number)"):
        with steer(lm, random_vector(lm), layers=layer, strength=1.0):
            pass


def test_default_layer_and_strength_come_from_the_vector(lm):
    vector = random_vector(lm, strength=1.5, layer=2)
    with steer(lm, vector):
        assert len(lm.adapter.layers[2]._forward_hooks) == 1
        assert active_hook_count(lm) == 1


def test_negative_strength_steers_the_other_way(lm):
    """-lambda adds -v: on the raw (unnormalised) hidden state the two shifts are exact opposites."""
    vector = random_vector(lm)
    h = torch.randn(1, 3, lm.hidden_size)
    up = steer_hidden(h, vector.scaled(1, 0.5), normalize=False)
    down = steer_hidden(h, vector.scaled(1, -0.5), normalize=False)
    torch.testing.assert_close(up - h, -(down - h))
    with steer(lm, vector, layers=1, strength=-0.5):
        assert active_hook_count(lm) == 1


def test_steering_object_is_checked_once_and_matches_steer(lm):
    vector = random_vector(lm)
    steering = Steering.create(lm, vector, layers=[2, 1], strength=0.75)
    assert steering.layers == (1, 2) and steering.strength == 0.75 and steering.normalize
    with steering.apply(lm):
        via_object = logits(lm)
    with steer(lm, vector, layers=[1, 2], strength=0.75):
        via_function = logits(lm)
    assert torch.equal(via_object, via_function)
    assert active_hook_count(lm) == 0
    moved = steering.at(lm, strength=0.0)
    assert moved.is_identity and moved.layers == (1, 2)


def test_steering_at_strength_zero_is_identity(lm):
    plain = logits(lm)
    with Steering.create(lm, random_vector(lm), layers=[0, 1, 2], strength=0.0).apply(lm):
        assert torch.equal(logits(lm), plain)


def test_normalize_switch_reaches_the_hook(lm):
    vector = random_vector(lm)
    kept = Steering.create(lm, vector, layers=1, strength=2.0, normalize=True)
    free = kept.with_normalize(False)
    with kept.apply(lm):
        a = logits(lm)
    with free.apply(lm):
        b = logits(lm)
    assert (a - b).abs().max() > 1e-4


def test_vector_from_another_model_is_refused_unless_allowed(lm):
    vector = random_vector(lm)
    vector.model_id = "some-other-model"
    with pytest.raises(VectorError, match="built for 'some-other-model'"):
        Steering.create(lm, vector, layers=1, strength=1.0)
    with pytest.raises(VectorError, match="built for 'some-other-model'"):
        with steer(lm, vector, layers=1, strength=1.0):
            pass
    allowed = Steering.create(lm, vector, layers=1, strength=1.0, allow_other_model=True)
    with allowed.apply(lm):
        assert active_hook_count(lm) == 1
    assert active_hook_count(lm) == 0


def test_missing_layer_norm_is_an_error_not_one(lm):
    vector = random_vector(lm)
    del vector.layer_norms[1]
    with pytest.raises(VectorError, match="no hidden-state norm for layer 1"):
        Steering.create(lm, vector, layers=1, strength=1.0)
    with pytest.raises(VectorError, match="no hidden-state norm"):
        vector.scaled(1, 1.0)


def test_as_steering_passes_a_steering_through_and_moves_it(lm):
    vector = random_vector(lm)
    steering = Steering.create(lm, vector, layers=1, strength=1.0)
    assert as_steering(lm, steering) is steering
    assert as_steering(lm, steering, strength=0.5).strength == 0.5
    assert as_steering(lm, None) is None
    assert as_steering(lm, vector, 2, 0.25).layers == (2,)
