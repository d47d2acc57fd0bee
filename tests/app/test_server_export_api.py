"""The Steer tab's "Use it in a server" through the app's API: a .gguf control vector loaded where vectors are loaded,
exported back with the llama.cpp command, the EasySteer request and the measured rescale gap; bad input refused."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

WIDTH = 32  # tiny-random-llama's hidden size


def control_vector(path, hint="llama", width=WIDTH, layers=(1, 2)):
    """A repeng-style control vector (unit directions, as repeng's PCA writes them)."""
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", hint)
    writer.add_uint32("controlvector.layer_count", len(layers))
    rng = np.random.default_rng(1)
    for layer in layers:
        vec = rng.standard_normal(width).astype(np.float32)
        writer.add_tensor(f"direction.{layer}", vec / np.linalg.norm(vec))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_upload_then_export_for_a_server(url, tmp_path):
    c = Client(url, verbose=False)
    info = c.predict(handle_file(str(control_vector(tmp_path / "happy.gguf"))), False, api_name="/load_vector")
    assert info["layers"] == [1, 2] and info["meta"]["provenance"].startswith("imported from happy.gguf")
    done, path = c.predict(2, 0.5, api_name="/export_gguf")
    reader = gguf.GGUFReader(path)
    assert [t.name for t in reader.tensors] == ["direction.2"]
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    assert ":0.5 --control-vector-layer-range 2 2" in done["llama_cpp"]["llama-server"]
    assert done["easysteer_request"]["steering"]["vectors"][0]["layers"] == [2]
    assert done["rescale_gap"]["mean_kl"] >= 0 and "mean KL" in done["warning"]
    from components.server_export import server_export_outputs

    note, file, commands, request = server_export_outputs(done, path)
    assert "Rescale: llama.cpp adds the vector" in note and file == path
    assert commands.splitlines()[0].startswith("llama-server -m MODEL.gguf --control-vector-scaled ")
    assert '"normalize": true' in request


def test_export_and_gguf_upload_refuse_bad_input_with_one_sentence(url, tmp_path):
    c = Client(url, verbose=False)
    with pytest.raises(AppError, match="hidden size"):
        c.predict(handle_file(str(control_vector(tmp_path / "wide.gguf", width=WIDTH + 1))), False,
                  api_name="/load_vector")
    with pytest.raises(AppError, match="allow"):
        c.predict(handle_file(str(control_vector(tmp_path / "qwen.gguf", hint="qwen2"))), False,
                  api_name="/load_vector")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 9)
    with pytest.raises(AppError, match="corrupt|truncated|GGUF"):
        c.predict(handle_file(str(broken)), False, api_name="/load_vector")
    c.predict(handle_file(str(control_vector(tmp_path / "ok.gguf"))), False, api_name="/load_vector")
    with pytest.raises(AppError, match="layer 0"):
        c.predict(0, 0.5, api_name="/export_gguf")
