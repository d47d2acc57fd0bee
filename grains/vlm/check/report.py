"""The report of a hallucination check: per-probe answers and POPE metrics, unsteered and steered, the McNemar
comparison and the build/check split; it renders itself as JSON, HTML (notebooks) and a text table."""

from __future__ import annotations

import html
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from grains.viz.formatting import percent
from grains.vlm.check.objects import Proposal
from grains.vlm.check.probes import CheckRun, Probe


def _pct(value: Any) -> str:
    return percent(value)


ABSENT_MEANING = ("\"Absent\" means not in your list of objects that are in the photo; the picture itself is not "
                  "checked. A \"yes\" to an object you did not list counts as a hallucination even if the object is "
                  "there, so check the picture for every flagged object.")

METRIC_ROWS = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
               ("yes ratio", "yes_ratio"), ("hallucinations (false yes)", "hallucinations"))


@dataclass
class CheckReport:
    """A hallucination check of one photo: per-probe answers and POPE metrics, unsteered and (optionally) steered,
    the McNemar comparison, and for a re-check the build/check split. Renders itself: `to_dict()`, `to_json()`,
    `_repr_html_()` (notebooks), `show()` (console). Made by `check_image` and `steer_and_recheck`.

    Args:
        model_id: the model checked.
        random_weights: True for a tiny random test model (its answers are meaningless).
        image: what the report says about the photo (name, size, digest).
        template: the question template.
        unsteered: every probe's answer and the POPE metrics, unsteered.
        steered: the same, steered (None without steering).
        comparison: the exact McNemar test of steered against unsteered.
        steering: a description of the steering.
        side_effects: the yes-ratio shift and answer mass.
        proposal: how the absent objects were proposed.
        split: for a re-check, which probes built the vector and which were checked.
        build: for a re-check, the vector's build summary.
        notes: plain sentences shown with the report.
        seconds: wall time.
        vector: the vector a re-check built (not in to_dict).

    Example:
        >>> report = grains.check_image(lm, "assets/images/coffee.jpg", present="cup", setting="adversarial")
        >>> report.unsteered.metrics["accuracy"]
        >>> report.show()
    """

    model_id: str
    random_weights: bool
    image: dict[str, Any]
    template: str
    unsteered: CheckRun
    steered: CheckRun | None = None
    comparison: dict[str, Any] | None = None
    steering: dict[str, Any] | None = None
    side_effects: dict[str, Any] | None = None
    proposal: Proposal | None = None
    split: dict[str, Any] | None = None
    build: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    vector: Any = field(default=None, repr=False)  # the SteeringVector a re-check built (not in to_dict)

    @property
    def probes(self) -> list[Probe]:
        return [a.probe for a in self.unsteered.answers]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe (NaN/inf become None)."""
        rows = []
        for i, a in enumerate(self.unsteered.answers):
            row = a.to_dict()
            if self.steered is not None:
                s = self.steered.answers[i]
                row.update({"answer_steered": s.answer, "p_yes_steered": s.p_yes, "correct_steered": s.correct,
                            "hallucination_steered": s.hallucination})
            rows.append(row)
        data = {
            "model": self.model_id, "random_weights": self.random_weights, "image": self.image,
            "question_template": self.template, "n": len(rows),
            "setting": self.proposal.setting if self.proposal else None,
            "proposal": self.proposal.to_dict() if self.proposal else None,
            "unsteered": self.unsteered.metrics, "steered": self.steered.metrics if self.steered else None,
            "mcnemar": self.comparison, "steering": self.steering, "side_effects": self.side_effects,
            "split": self.split, "build": self.build, "probes": rows, "notes": self.notes, "seconds": self.seconds,
            "absent_means": ABSENT_MEANING,
        }
        return json_safe(data)

    def to_json(self, indent: int | None = None) -> str:
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def reading(self) -> str:
        """One or two plain sentences: what the check found."""
        m = self.unsteered.metrics
        absent = m["absent"]
        text = (f"The model said yes to {m['hallucinations']} of {absent} absent objects" if absent
                else "No absent objects were asked about")
        text += f" and to {m['tp']} of {m['tp'] + m['fn']} present ones (accuracy {m['accuracy']:.0%}, n = {m['n']})."
        if self.steered is not None and self.comparison is not None:
            s = self.steered.metrics
            text += (f" Steered: {s['hallucinations']} of {s['absent']} absent, accuracy {s['accuracy']:.0%}; "
                     f"{self.comparison['reading']}.")
            if self.comparison["power_note"]:
                text += " " + self.comparison["power_note"]
        return text

    # -------------------------------------------------------------- rendering

    def _metric_rows(self) -> list[tuple[str, str, str]]:
        out = []
        for label, key in METRIC_ROWS:
            fmt = (lambda v: str(v)) if key == "hallucinations" else _pct
            before = fmt(self.unsteered.metrics.get(key))
            after = fmt(self.steered.metrics.get(key)) if self.steered else "—"
            out.append((label, before, after))
        return out

    def _probe_rows(self) -> list[list[str]]:
        rows = []
        for i, a in enumerate(self.unsteered.answers):
            row = [a.probe.object, a.probe.truth, a.answer, f"{a.p_yes:.3f}", "HALLUCINATION" if a.hallucination
                   else ("miss" if not a.correct else "")]
            if self.steered is not None:
                s = self.steered.answers[i]
                row += [s.answer, f"{s.p_yes:.3f}", "HALLUCINATION" if s.hallucination
                        else ("miss" if not s.correct else "")]
            rows.append(row)
        return rows

    def _headers(self) -> list[str]:
        head = ["object", "truth", "answer", "P(yes)", "flag"]
        return head + ["steered answer", "steered P(yes)", "steered flag"] if self.steered else head

    def _repr_html_(self) -> str:
        e = html.escape
        title = (f"<b>Hallucination check</b> · {e(self.model_id)} · {e(str(self.image.get('name', 'image')))} · "
                 f"n = {len(self.unsteered.answers)}")
        warn = ("<div style='color:#7a4a00'><b>Random weights:</b> a tiny test model; its answers are meaningless."
                "</div>" if self.random_weights else "")
        metrics = "".join(f"<tr><th style='text-align:left'>{e(a)}</th><td>{e(b)}</td><td>{e(c)}</td></tr>"
                          for a, b, c in self._metric_rows())
        metrics = (f"<table><tr><th></th><th>unsteered</th><th>steered</th></tr>{metrics}</table>")
        head = "".join(f"<th>{e(h)}</th>" for h in self._headers())
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in self._probe_rows())
        probes = f"<table><tr>{head}</tr>{body}</table>"
        notes = "".join(f"<li>{e(n)}</li>" for n in self._all_notes())
        return (f"<div class='grains-check'>{title}{warn}<p>{e(self.reading())}</p>{metrics}{probes}"
                f"{'<ul>' + notes + '</ul>' if notes else ''}</div>")

    def _all_notes(self) -> list[str]:
        notes = [ABSENT_MEANING] if self.unsteered.metrics.get("absent") else []
        notes += self.notes
        if self.proposal:
            notes += [f"Absent objects proposed in the {self.proposal.setting} setting. " + " ".join(
                self.proposal.notes)]
        if self.side_effects:
            notes += self.side_effects["notes"]
        if self.split:
            notes.append(self.split["note"])
        return notes

    def __str__(self) -> str:
        lines = [f"Hallucination check: {self.model_id}, {self.image.get('name', 'image')}, "
                 f"n = {len(self.unsteered.answers)}"]
        if self.random_weights:
            lines.append("RANDOM WEIGHTS: a tiny test model; its answers are meaningless.")
        lines.append(self.reading())
        lines.append(f"{'':28s}{'unsteered':>12s}{'steered':>12s}")
        lines += [f"{a:28s}{b:>12s}{c:>12s}" for a, b, c in self._metric_rows()]
        headers = self._headers()
        rows = self._probe_rows()
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines += [f"- {n}" for n in self._all_notes()]
        return "\n".join(lines)

    def show(self, file: Any = None) -> None:
        """Print the report as a text table (to stdout unless `file` is given)."""
        print(str(self), file=file or sys.stdout)


def json_safe(value: Any) -> Any:
    """A value with NaN and infinite floats replaced by None, tuples made lists and keys made strings.

    Args:
        value: nested dicts, lists, tuples and scalars.

    Returns:
        The JSON-safe copy.

    Example:
        >>> json_safe({"a": float("nan"), "b": (1.0, float("inf"))})
        {'a': None, 'b': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
