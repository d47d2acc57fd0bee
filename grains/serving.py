"""How to serve an exported control vector: the llama.cpp command lines, the EasySteer (vLLM) request body, and how
much the engines' missing norm rescale changes the model, measured.

llama.cpp adds `scale * direction.k` to block k's output at every position and never restores the token's norm;
the Studio restores it by default. `measure_rescale_gap` says how far apart the two are on the neutral prompts: the
mean KL(P_rescaled || P_not_rescaled) of the next-token distribution, in nats, at the exported strength.
"""

from __future__ import annotations

import json
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grains.errors import InputError

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering

RESCALE_PROMPTS = 16  # neutral prompts for the rescale measure (a few seconds on the embedded model)
ENGINE_MODEL_PLACEHOLDER = "MODEL.gguf"


def check_engine_model(lm: LoadedModel) -> None:
    """Refuse, in one sentence, a model whose engines take no control vector.

    Args:
        lm: the model the vector steers.

    Returns:
        None; a vision-language model raises InputError.
    """
    if lm.is_vlm:
        raise InputError("This is a vision-language model: llama.cpp's control vectors and EasySteer's GGUF vectors "
                         "are exported for text models only, so this vector cannot be served by them.")


def llama_cpp_commands(gguf_path: str | Path, layers: list[int], strength: float,
                       model_path: str = ENGINE_MODEL_PLACEHOLDER) -> dict[str, str]:
    """The llama-server and llama-cli command lines that steer like the Studio at `strength` (rescale off).

    Args:
        gguf_path: the exported control vector.
        layers: the layers in the file.
        strength: the Studio strength (= llama.cpp's scale under the export's convention).
        model_path: the model's GGUF file (a placeholder by default).

    Returns:
        {"llama-server": ..., "llama-cli": ...}.

    Example:
        >>> llama_cpp_commands("v.gguf", [12], 0.2)["llama-server"]
        'llama-server -m MODEL.gguf --control-vector-scaled v.gguf:0.2 --control-vector-layer-range 12 12'
    """
    vec = shlex.quote(f"{gguf_path}:{strength:g}")
    steer = f"--control-vector-scaled {vec} --control-vector-layer-range {min(layers)} {max(layers)}"
    model = shlex.quote(str(model_path))
    return {"llama-server": f"llama-server -m {model} {steer}",
            "llama-cli": f"llama-cli -m {model} {steer} --temp 0 -p 'The weather today'"}


def easysteer_request(gguf_path: str | Path, layers: list[int], strength: float, normalize: bool = True,
                      model_name: str = "MODEL") -> dict[str, Any]:
    """The body of an EasySteer (vLLM) OpenAI-compatible request steered like the Studio.

    Args:
        gguf_path: the exported control vector (a path the server can read).
        layers: the layers to steer.
        strength: the Studio strength (= EasySteer's scale under the export's convention).
        normalize: EasySteer's `normalize` (true restores each token's norm, as the Studio's default does).
        model_name: the served model's name.

    Returns:
        A JSON-ready request body (`steering` is what the OpenAI SDK passes in `extra_body`).
    """
    return {"model": model_name, "prompt": "The weather today", "max_tokens": 40, "temperature": 0,
            "steering": {"vectors": [{"source": str(gguf_path), "algorithm": "direct", "scale": strength,
                                      "layers": list(layers), "normalize": bool(normalize),
                                      "apply": {"prompt": "all", "generation": "all"}}]}}


@dataclass
class RescaleGap:
    """How much restoring each token's norm matters at one setting, on neutral prompts.

    Args:
        mean_kl: mean KL(P_rescaled || P_not_rescaled) of the next-token distribution, in nats.
        max_kl: the largest over the prompts.
        n_prompts: prompts measured.
        kl_rescaled: mean KL(P_unsteered || P_rescaled) (the Studio's default steering).
        kl_not_rescaled: mean KL(P_unsteered || P_not_rescaled) (what llama.cpp does).
    """

    mean_kl: float
    max_kl: float
    n_prompts: int
    kl_rescaled: float
    kl_not_rescaled: float

    def sentence(self, strength: float) -> str:
        """The one-sentence warning printed with the commands."""
        return (f"llama.cpp adds the vector without restoring each token's norm (the Studio restores it by default): "
                f"at strength {strength:g} the two differ by a mean KL of {self.mean_kl:.3g} nats per next token on "
                f"{self.n_prompts} neutral prompts (max {self.max_kl:.3g}; vs unsteered: {self.kl_rescaled:.3g} "
                f"rescaled, {self.kl_not_rescaled:.3g} not).")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"mean_kl": self.mean_kl, "max_kl": self.max_kl, "n_prompts": self.n_prompts,
                "kl_rescaled_vs_unsteered": self.kl_rescaled, "kl_not_rescaled_vs_unsteered": self.kl_not_rescaled}


def measure_rescale_gap(lm: LoadedModel, steering: Steering, prompts: list[str] | None = None) -> RescaleGap:
    """Next-token KL between the Studio's steering with and without the norm rescale, on neutral prompts.

    Args:
        lm: the model.
        steering: the exported setting (its `normalize` is ignored: both are measured).
        prompts: neutral prompts (default: the first RESCALE_PROMPTS shipped ones).

    Returns:
        A RescaleGap (all zeros at strength 0).
    """
    from grains.side_effects import _last_logprobs, load_neutral_prompts

    texts = prompts if prompts is not None else load_neutral_prompts(limit=RESCALE_PROMPTS)
    with lm.lock:
        base = _last_logprobs(lm, texts)
        with steering.with_normalize(True).apply(lm):
            kept = _last_logprobs(lm, texts)
        with steering.with_normalize(False).apply(lm):
            added = _last_logprobs(lm, texts)

    def kl(p_log, q_log) -> list[float]:
        return (p_log.exp() * (p_log - q_log)).sum(dim=-1).clamp_min(0.0).tolist()

    gap = kl(kept, added)
    return RescaleGap(mean_kl=statistics.fmean(gap), max_kl=max(gap), n_prompts=len(texts),
                      kl_rescaled=statistics.fmean(kl(base, kept)), kl_not_rescaled=statistics.fmean(kl(base, added)))


def serving_text(gguf_path: str | Path, layers: list[int], strength: float, gap: RescaleGap | None,
                 model_path: str = ENGINE_MODEL_PLACEHOLDER) -> str:
    """The plain-text instructions: scale convention, llama.cpp commands, EasySteer body, rescale warning.

    Args:
        gguf_path: the exported file.
        layers: its layers.
        strength: the Studio strength (= the engines' scale).
        gap: the measured rescale difference, or None when not measured.
        model_path: the model's GGUF file for the commands.

    Returns:
        Several lines of text.
    """
    commands = llama_cpp_commands(gguf_path, layers, strength, model_path)
    body = easysteer_request(gguf_path, layers, strength)
    warning = gap.sentence(strength) if gap is not None else (
        "llama.cpp adds the vector without restoring each token's norm (the Studio restores it by default); the "
        "size of that difference was not measured.")
    return "\n".join([
        f"wrote {gguf_path}: direction.k = one unit of Studio strength at layer k (layers "
        f"{', '.join(map(str, layers))}), so the engines' scale is the Studio strength ({strength:g}).",
        "llama.cpp:", f"  {commands['llama-server']}", f"  {commands['llama-cli']}",
        "EasySteer (vLLM, POST /v1/completions; `steering` goes in the OpenAI SDK's extra_body):",
        "  " + json.dumps(body),
        f"warning: {warning}",
    ])
