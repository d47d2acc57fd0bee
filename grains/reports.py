"""What `grains.evaluate` and `grains.sweep` return: results that serialise (`to_json`, `from_json`), render in a
notebook (`_repr_html_`) and `show()` themselves.

`to_dict()` gives the flat JSON form the CLI's `eval --json` prints (steered metrics under their names, unsteered
ones with the suffix `_unsteered`), so saved files and scripts that read them keep working."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from grains.viz.display import Renderable, read_json_source

METRIC_KEYS = ("accuracy", "margin", "answer_distribution", "mc1", "mc2", "mc2_answer_set", "mc1_length_normalized",
               "mc2_length_normalized", "precision", "recall", "f1", "yes_ratio")
UNSTEERED = "_unsteered"


@dataclass
class EvaluationReport(Renderable):
    """Accuracy unsteered and steered on one dataset, the paired test between them, and the side effects.

    Args:
        n: items scored.
        kind: "truthfulqa" (MC1/MC2), "pairs" (preference pairs) or "probes" (yes/no, POPE metrics).
        metrics: the steered metrics (accuracy, mean margin, and per kind MC1/MC2, answer distribution or POPE); the
            unsteered ones when nothing was steered.
        metrics_unsteered: the same metrics without steering.
        steered: whether a steering setting was applied.
        gain: steered minus unsteered accuracy, with `gain_ci` (the exact interval inverting McNemar's test,
            `gain_ci_method`) and `p_value` (exact McNemar); `reading` says it in one sentence.
        only_unsteered_correct / only_steered_correct: the discordant pairs the test counts.
        steering: the setting (`Steering.to_dict()`), with `layer` and `strength` for quick reading.
        side_effects: KL on neutral prompts and repetition of continuations, when measured.
        items: per-item rows (dataset row, correct and margin unsteered and steered, answers), when asked.

    Example:
        >>> report = grains.evaluate(lm, rows, "pairs", steering, per_item=True)
        >>> report.gain, report.p_value, report.side_effects["kl_mean"]
        >>> report.show()
    """

    n: int
    kind: str
    metrics: dict[str, Any]
    metrics_unsteered: dict[str, Any]
    steered: bool
    p_value: float | None
    gain: float
    gain_ci: list[float] | None
    gain_ci_method: str
    reading: str
    only_unsteered_correct: int
    only_steered_correct: int
    length_normalization: bool = False
    prompt_format: str | None = None
    layer: list[int] | None = None
    strength: float | None = None
    steering: dict[str, Any] | None = None
    margin_note: str | None = None
    side_effects: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Steered accuracy (the unsteered one when nothing was steered)."""
        return float(self.metrics["accuracy"])

    @property
    def accuracy_unsteered(self) -> float:
        """Accuracy without steering."""
        return float(self.metrics_unsteered["accuracy"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """The report from its flat dict (`to_dict()`, or a saved `eval --json`).

        Args:
            data: the flat dict.

        Returns:
            The EvaluationReport; keys it does not know are kept in `extra`.
        """
        data = dict(data)
        metrics = {k: data.pop(k) for k in METRIC_KEYS if k in data}
        unsteered = {k: data.pop(k + UNSTEERED) for k in METRIC_KEYS if k + UNSTEERED in data}
        known = {f.name for f in fields(cls)} - {"metrics", "metrics_unsteered", "extra"}
        values = {k: data.pop(k) for k in list(data) if k in known}
        extra = dict(data.pop("extra", {}) or {})
        extra.update(data)
        return cls(metrics=metrics, metrics_unsteered=unsteered, extra=extra, **values)

    @classmethod
    def from_json(cls, source: str | Path) -> EvaluationReport:
        """The report from JSON text or a JSON file written by `to_json` (or `eval --json`)."""
        return cls.from_dict(json.loads(read_json_source(source)))

    def to_dict(self) -> dict[str, Any]:
        """The flat form `eval --json` prints: metrics under their names, unsteered ones suffixed `_unsteered`."""
        out: dict[str, Any] = {"n": self.n, "kind": self.kind, "length_normalization": self.length_normalization,
                               "prompt_format": self.prompt_format}
        out.update(self.metrics)
        out.update({k + UNSTEERED: v for k, v in self.metrics_unsteered.items()})
        for name in ("steered", "p_value", "gain", "gain_ci", "gain_ci_method", "reading", "only_unsteered_correct",
                     "only_steered_correct"):
            out[name] = getattr(self, name)
        if self.steered:
            out.update({"layer": self.layer, "strength": self.strength, "steering": self.steering})
        for name in ("margin_note", "side_effects", "items"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.extra)
        return out

    def to_html(self) -> str:
        """A table of the metrics unsteered and steered, the test, the side effects and the first items."""
        from grains.viz.reports import evaluation_html

        return evaluation_html(self)

    def to_text(self) -> str:
        """A plain-text summary for a terminal."""
        from grains.viz.reports import evaluation_text

        return evaluation_text(self)


@dataclass
class SweepResult(Renderable):
    """Accuracy gain for every layer x strength cell, with Holm-corrected exact McNemar p-values.

    Args:
        layers, strengths: the grid (rows, columns).
        values: accuracy gain per cell; `accuracy` the steered accuracy; `margin_gain` the mean margin gain.
        p_values / p_values_adjusted / significant: raw and Holm-adjusted p per cell (None at strength 0, which is
            the identity and not a tested cell) and whether the adjusted p is below 0.05.
        cells_tested: how many cells the correction counts.
        best_of_n: the cell with the largest gain, labelled "best of N": a maximum over cells, biased upward, never
            an estimate of what steering gains.
        kl: per-cell mean KL on neutral prompts (the side effect), when measured.

    Example:
        >>> result = grains.sweep(lm, rows, "pairs", vector, layers=[6, 8], strengths=[0.5, 1.0])
        >>> result.best_of_n["label"], result.significant
        >>> result.show()
    """

    layers: list[int]
    strengths: list[float]
    values: list[list[float]]
    accuracy: list[list[float]]
    margin_gain: list[list[float]]
    p_values: list[list[float | None]]
    p_values_adjusted: list[list[float | None]]
    significant: list[list[bool]]
    cells_tested: int
    best_of_n: dict[str, Any] | None
    accuracy_unsteered: float
    n: int
    kind: str
    metric: str = "accuracy gain"
    correction: str = "holm"
    length_normalization: bool = False
    normalize: bool = True
    kl: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        """The sweep from its dict (`to_dict()`); unknown keys are kept in `extra`."""
        data = dict(data)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: data.pop(k) for k in list(data) if k in known}
        extra = dict(data.pop("extra", {}) or {})
        extra.update(data)
        return cls(extra=extra, **values)

    @classmethod
    def from_json(cls, source: str | Path) -> SweepResult:
        """The sweep from JSON text or a JSON file written by `to_json`."""
        return cls.from_dict(json.loads(read_json_source(source)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (`kl` only when measured; `extra` keys at the top level)."""
        out = asdict(self)
        extra = out.pop("extra")
        if out["kl"] is None:
            del out["kl"]
        out.update(extra)
        return out

    def to_html(self) -> str:
        """The grid as a table: gain per cell, corrected significance marked, the best cell labelled best of N."""
        from grains.viz.reports import sweep_html

        return sweep_html(self)

    def to_text(self) -> str:
        """A plain-text grid for a terminal."""
        from grains.viz.reports import sweep_text

        return sweep_text(self)
