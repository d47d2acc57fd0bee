"""GrAInS: gradient-based attribution for inference-time steering of language and vision-language models."""

__version__ = "0.1.0"
