"""GrAInS: gradient-based attribution for inference-time steering of language and vision-language models.

    import grains
    lm = grains.load_model("gemma-3-270m")
    result = grains.attribute(lm, "Q: What happens if you eat watermelon seeds?\\nA:", " Nothing happens",
                              " You grow watermelons in your stomach")
    built = grains.build_vector(lm, grains.truthfulqa_to_pairs(grains.load_truthfulqa(path, limit=16)))
    pair = grains.generate_pair(lm, "Q: Is it safe to swim after eating?\\nA:", built.vector)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "grains.models", "LoadedModel": "grains.models",
    "attribute": "grains.attribution", "AttributionResult": "grains.attribution",
    "select_top_k": "grains.topk", "TokenSelection": "grains.topk",
    "build_vector": "grains.build", "BuildResult": "grains.build",
    "SteeringVector": "grains.vectors", "load_vector": "grains.vectors",
    "steer": "grains.steering", "Steering": "grains.steering", "as_steering": "grains.steering",
    "generate_pair": "grains.generation", "generate_one": "grains.generation", "stream_pair": "grains.generation",
    "GenerationSettings": "grains.generation",
    "evaluate": "grains.evaluation", "sweep": "grains.evaluation",
    "EvaluationReport": "grains.reports", "SweepResult": "grains.reports", "to_jsonable": "grains.serialize",
    "load_truthfulqa": "grains.data", "load_pairs": "grains.data", "load_probes": "grains.data",
    "load_any": "grains.data", "truthfulqa_to_pairs": "grains.data", "PreferenceExample": "grains.data",
    "BUILTIN_DATASETS": "grains.data",
    "GrainsError": "grains.errors",
    "check_image": "grains.vlm.check", "CheckReport": "grains.vlm.check",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Lazy exports, so `import grains` stays fast and the CLI starts quickly."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'grains' has no attribute {name!r}")
