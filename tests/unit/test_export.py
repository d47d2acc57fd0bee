"""GGUF control-vector export and import: the layout read back by gguf's GGUFReader, llama.cpp's loader rules as an
oracle, the engine's plain additive hook against the Studio's steering with the rescale off, and the round trip."""

import json

import gguf
import numpy as np
import pytest
import torch

from grains.control_vectors import import_control_vector, read_control_vector
from grains.errors import InputError, VectorError
from grains.export import export_gguf, model_hint
from grains.serving import easysteer_request, llama_cpp_commands, measure_rescale_gap
from grains.steering import Steering
from tests import llama_cpp_oracle as oracle
from tests.factories import random_vector


@pytest.fixture(scope="module")
def vector(lm):
    vec = random_vector(lm, seed=3, strength=0.4, layer=2)
    vec.layer_norms = {i: 1.5 + i for i in range(lm.num_layers)}  # distinct per layer: catches a swapped norm
    return vec


def write_raw(path, tensors, hint="llama", arch="controlvector"):
    """A control vector written directly with GGUFWriter (as repeng does), for the reader and the oracle."""
    writer = gguf.GGUFWriter(str(path), arch)
    if hint:
        writer.add_string("controlvector.model_hint", hint)
    writer.add_uint32("controlvector.layer_count", len(tensors))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_layout_read_back_by_gguf(vector, lm, tmp_path):
    written = export_gguf(vector, tmp_path / "v.gguf", layers=[1, 3], strength=0.4, model_type="llama")
    reader = gguf.GGUFReader(str(written.path))
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    assert reader.get_field("controlvector.layer_count").contents() == 2
    assert sorted(t.name for t in reader.tensors) == ["direction.1", "direction.3"]
    for tensor in reader.tensors:
        layer = int(tensor.name.split(".")[1])
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(tensor.shape) == [lm.hidden_size]
        expected = vector.directions[layer] / vector.directions[layer].norm() * vector.layer_norms[layer]
        np.testing.assert_allclose(np.asarray(tensor.data), expected.numpy(), rtol=1e-6, atol=1e-6)
        assert float(np.linalg.norm(tensor.data)) == pytest.approx(1.5 + layer, rel=1e-5)  # 1 unit of strength
    assert json.loads(reader.get_field("grains.vector").contents())["model_id"] == lm.model_id


def test_model_hint_is_llama_cpps_architecture_name_and_never_empty():
    assert model_hint("gemma3_text") == "gemma3"
    assert model_hint("qwen2") == "qwen2"
    with pytest.raises(VectorError, match="model hint"):
        model_hint("")


def test_llama_cpp_accepts_the_export_and_adds_scale_times_direction(vector, lm, tmp_path):
    written = export_gguf(vector, tmp_path / "v.gguf", layers=[1, 3], model_type="llama")
    adds = oracle.additions([(written.path, 0.4)], n_layer=lm.num_layers, n_embd_model=lm.hidden_size,
                            layer_range=(1, 3))
    assert sorted(adds) == [1, 3]
    for layer, add in adds.items():
        np.testing.assert_allclose(add, vector.scaled(layer, 0.4).numpy(), rtol=1e-5, atol=1e-6)
    assert oracle.additions([(written.path, 0.4)], lm.num_layers, lm.hidden_size, (2, 2)) == {}


@pytest.mark.parametrize("tensors, reason", [
    ({"direction.0": np.ones(8, np.float32)}, "zero"),
    ({"direction.x": np.ones(8, np.float32)}, "unparsable"),
    ({"direction.1": np.ones(8, np.float16)}, "non-F32"),
    ({"direction.1": np.ones((2, 4), np.float32)}, "non-1D"),
    ({"direction.1": np.ones(8, np.float32), "direction.2": np.ones(4, np.float32)}, "previous dimensions"),
])
def test_what_llama_cpp_refuses_our_reader_refuses(tmp_path, tensors, reason):
    path = write_raw(tmp_path / "bad.gguf", tensors)
    with pytest.raises(oracle.Refused, match=reason):
        oracle.additions([(path, 1.0)], n_layer=4, n_embd_model=8)
    with pytest.raises(VectorError):
        read_control_vector(path)


def test_export_refuses_layer_0_and_paths_llama_cpp_cannot_carry(vector, tmp_path):
    with pytest.raises(InputError, match="layer 0"):
        export_gguf(vector, tmp_path / "v.gguf", layers=[0, 1], model_type="llama")
    with pytest.raises(InputError, match="':'"):
        export_gguf(vector, tmp_path / "a:b.gguf", layers=[1], model_type="llama")
    with pytest.raises(InputError, match="out of range"):
        export_gguf(vector, tmp_path / "v.gguf", layers=[9], model_type="llama")


def test_plain_additive_hook_with_the_exported_file_equals_studio_steering_without_rescale(vector, lm, tmp_path):
    written = export_gguf(vector, tmp_path / "v.gguf", layers=[1, 3], model_type="llama")
    strength = 0.4
    adds = oracle.additions([(written.path, strength)], lm.num_layers, lm.hidden_size, layer_range=(1, 3))
    ids = torch.tensor([lm.encode_prompt("The weather today is").ids])

    def adder(vec):
        return lambda module, args, output: (output + torch.from_numpy(vec)) if isinstance(output, torch.Tensor) \
            else (output[0] + torch.from_numpy(vec), *output[1:])

    handles = [lm.adapter.layers[k].register_forward_hook(adder(v)) for k, v in adds.items()]
    try:
        with torch.no_grad():
            engine = lm.model(input_ids=ids).logits
    finally:
        for handle in handles:
            handle.remove()
    steering = Steering.create(lm, vector, layers=[1, 3], strength=strength, normalize=False)
    with torch.no_grad(), steering.apply(lm):
        studio = lm.model(input_ids=ids).logits
    with torch.no_grad():
        plain = lm.model(input_ids=ids).logits
    assert float((studio - plain).abs().max()) > 1e-3  # the vector does move this model
    torch.testing.assert_close(engine, studio, rtol=0, atol=1e-5)


def test_import_of_export_gives_the_vector_back(vector, lm, tmp_path):
    written = export_gguf(vector, tmp_path / "v.gguf", layers=[1, 2, 3], model_type="llama")
    back = import_control_vector(written.path, lm)
    assert back.layers == [1, 2, 3]
    for layer in back.layers:
        torch.testing.assert_close(back.scaled(layer, 0.7), vector.scaled(layer, 0.7), rtol=1e-5, atol=1e-6)
    assert back.layer_norms == vector.layer_norms
    assert (back.default_layer, back.default_strength, back.model_id) == (2, 0.4, vector.model_id)
    assert back.meta["provenance"].startswith("imported from v.gguf (grains")


def test_import_of_a_repeng_style_file_measures_norms_and_suggests_scale_one(lm, tmp_path):
    rng = np.random.default_rng(0)
    unit = rng.standard_normal(lm.hidden_size).astype(np.float32)
    unit /= np.linalg.norm(unit)
    path = write_raw(tmp_path / "happy.gguf", {"direction.1": 2 * unit, "direction.2": unit})
    vec = import_control_vector(path, lm)
    assert vec.meta["provenance"] == "imported from happy.gguf (llama.cpp/repeng/other, model hint llama)"
    assert vec.layers == [1, 2] and all(vec.layer_norms[k] > 0 for k in range(lm.num_layers))
    relative = {k: float(v) for k, v in vec.meta["engine_scale_1_strength"].items()}
    assert relative["1"] == pytest.approx(2 / vec.layer_norms[1], rel=1e-5)
    # Strength `relative` in the Studio adds exactly what the engine adds at scale 1.
    np.testing.assert_allclose(vec.scaled(1, relative["1"]).numpy(), 2 * unit, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tensors, hint, match", [
    ({"direction.1": np.ones(7, np.float32)}, "llama", "hidden size"),
    ({"direction.1": np.ones(1, np.float32)}, "", "model_hint"),
    ({"direction.9": None}, "llama", "layer 9"),
    ({"direction.1": None}, "gemma3", "--allow-other-model"),
])
def test_import_refuses_what_does_not_fit(lm, tmp_path, tensors, hint, match):
    tensors = {k: (np.ones(lm.hidden_size, np.float32) if v is None else v) for k, v in tensors.items()}
    path = write_raw(tmp_path / "x.gguf", tensors, hint=hint)
    with pytest.raises(VectorError, match=match):
        import_control_vector(path, lm)


def test_import_refuses_a_model_file_and_non_gguf(lm, tmp_path):
    path = write_raw(tmp_path / "m.gguf", {"direction.1": np.ones(4, np.float32)}, arch="llama")
    with pytest.raises(VectorError, match="not a control vector"):
        read_control_vector(path)
    (tmp_path / "p.gguf").write_bytes(b"\x80\x04 pickle")
    with pytest.raises(VectorError, match="not a GGUF"):
        read_control_vector(tmp_path / "p.gguf")


def test_engine_commands_and_request_carry_the_layers_and_scale():
    cmds = llama_cpp_commands("v.gguf", [8, 10], 0.25)
    assert "--control-vector-scaled v.gguf:0.25 --control-vector-layer-range 8 10" in cmds["llama-server"]
    body = easysteer_request("v.gguf", [8, 10], 0.25)
    spec = body["steering"]["vectors"][0]
    assert (spec["scale"], spec["layers"], spec["normalize"], spec["algorithm"]) == (0.25, [8, 10], True, "direct")


def test_rescale_gap_is_zero_at_strength_zero_and_positive_when_steering(vector, lm):
    prompts = ["The weather today", "A list of colours:"]
    zero = measure_rescale_gap(lm, Steering.create(lm, vector, 2, 0.0), prompts)
    assert zero.mean_kl == 0.0
    gap = measure_rescale_gap(lm, Steering.create(lm, vector, 2, 2.0), prompts)
    assert gap.mean_kl > 1e-6 and gap.n_prompts == 2
