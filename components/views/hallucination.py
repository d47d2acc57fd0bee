"""Hallucination check views: the metrics unsteered vs steered with the McNemar reading, the build/check split,
the per-probe table and choices, a probe heatmap's note, and the results marked outdated for another photo."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.common import esc, mark_outdated, note_html, outdated_html
from grains.viz.formatting import percent

HEADERS = ["object", "truth", "answer", "P(yes)", "flag", "steered answer", "steered P(yes)", "steered flag"]
EMPTY = ('<div class="grains-placeholder">Upload a photo (or pick a shipped one), list objects that are in it and '
         'objects that are not, then run the check.</div>')


def _pct(value: Any) -> str:
    return percent(value)


def summary_html(data: dict | None) -> str:
    """Metrics unsteered vs steered, the McNemar reading (and when n is too small to reject), split and notes."""
    if not data:
        return EMPTY
    u, s = data["unsteered"], data.get("steered")
    rows = [("accuracy", "accuracy", _pct), ("precision", "precision", _pct), ("recall", "recall", _pct),
            ("F1", "f1", _pct), ("yes ratio", "yes_ratio", _pct),
            ("hallucinations (false yes)", "hallucinations", lambda v: f"{v} of {u['absent']}")]
    body = "".join(f"<tr><th>{esc(label)}</th><td class='grains-num'>{esc(fmt(u.get(key)))}</td>"
                   f"<td class='grains-num'>{esc(fmt(s.get(key))) if s else '—'}</td></tr>" for label, key, fmt in rows)
    image = data.get("image") or {}
    head = (f"<div class='grains-muted'>{esc(data['model'])} · {esc(image.get('name', ''))} · n = {data['n']} probes "
            f"({u['tp'] + u['fn']} present, {u['absent']} absent) · “{esc(data['question_template'])}”</div>")
    html = head
    html += ("<table class='grains-summary'><tr><th></th><th>unsteered</th><th>steered</th></tr>" + body + "</table>")
    mc = data.get("mcnemar")
    if mc:
        steer = data.get("steering") or {}
        layers = ", ".join(map(str, steer.get("layers", [])))
        html += note_html(f"<b>{esc(mc['reading'])}</b> (exact McNemar on the {mc['discordant']} probes that changed "
                          f"between right and wrong; steered at layer {esc(layers)}, strength "
                          f"{steer.get('strength', 0):g}).", "ok" if mc["significant"] else "info")
        if mc["power_note"]:
            html += note_html(esc(mc["power_note"]), "warn")
    notes = list(data.get("notes") or [])
    if data.get("absent_means") and u.get("absent"):
        html += note_html(esc(data["absent_means"]), "info")
    if data.get("proposal"):
        prop = data["proposal"]
        notes.append(f"Absent objects proposed in the {prop['setting']} setting: {', '.join(prop['objects'])}. "
                     + " ".join(prop["notes"]))
    side = data.get("side_effects") or {}
    notes += side.get("notes", [])
    if side:
        notes.append(f"Side effects: the yes ratio moved {side['yes_ratio_change']:+.0%}; probability on yes/no "
                     f"{side['answer_mass_unsteered']:.3g} unsteered, {side['answer_mass']:.3g} steered.")
    html += "".join(f"<div class='grains-muted'>{esc(n)}</div>" for n in notes)
    return html


def split_html(data: dict | None) -> str:
    """Which probes built the vector and which were checked (never the same)."""
    split = (data or {}).get("split")
    if not split:
        return ""
    build = data.get("build") or {}
    if split.get("source") == "vector":
        return note_html(f"<b>No build:</b> {esc(split['note'])}<br>Checked on: "
                         f"{esc(', '.join(split['check_objects']))}", "info")
    return note_html(
        f"<b>Split kept:</b> {esc(split['note'])}<br>Built from: {esc(', '.join(split['build_objects']))}<br>"
        f"Checked on: {esc(', '.join(split['check_objects']))}<br>Vector: {esc(build.get('method', ''))}, "
        f"{build.get('n_examples', 0)} examples; cross-validated suggestion layer {build.get('layer')}, strength "
        f"{build.get('strength', 0):g}. {esc(build.get('note', ''))}", "info")


def table_rows(data: dict | None) -> list[list[Any]]:
    rows = []
    for p in (data or {}).get("probes", []):
        flag = "HALLUCINATION" if p["hallucination"] else ("miss" if not p["correct"] else "")
        row = [p["object"], p["truth"], p["answer"], round(p["p_yes"], 3), flag]
        if "answer_steered" in p:
            s_flag = "HALLUCINATION" if p["hallucination_steered"] else ("miss" if not p["correct_steered"] else "")
            row += [p["answer_steered"], round(p["p_yes_steered"], 3), s_flag]
        else:
            row += ["", None, ""]
        rows.append(row)
    return rows


def probe_choices(data: dict | None) -> list[tuple[str, int]]:
    return [(f"{p['object']} ({'in' if p['truth'] == 'yes' else 'not in'} photo)", i)
            for i, p in enumerate((data or {}).get("probes", []))]


def probe_note(probe: dict, info: dict, steps: int) -> str:
    """The note under a probe's patch heatmap: the question, the answer, the legend and the convergence check."""
    truth_word = "No" if probe["truth"] == "no" else "Yes"
    other = "Yes" if truth_word == "No" else "No"
    said = probe.get("answer_steered", probe["answer"]) if "answer_steered" in probe else probe["answer"]
    html = (f"<b>{esc(probe['question'])}</b> Truth: {esc(probe['truth'])}; the model said {esc(said)} "
            f"(P(yes) = {probe['p_yes']:.3f}). IG of log P(“{truth_word}”) − log P(“{other}”): "
            f"<span style='color:#b2182b'><b>red</b></span> patches push toward the truthful “{truth_word}”, "
            f"<span style='color:#2166ac'><b>blue</b></span> ones toward “{other}”"
            + (" (the patches behind a false yes)." if probe["truth"] == "no" else ".")
            + f" The image carries {info['image_share'] or 0:.0%} of the prompt's |attribution|.")
    html = f'<div class="grains-muted">{html}</div>'
    rel = info["relative_delta"] or 0.0
    if info["converged"]:
        html += note_html(f"IG converged (delta {rel:.1%} of f(x) − f(baseline), {steps} steps).", "ok")
    else:
        html += note_html(f"<b>Large convergence delta</b> ({rel:.0%} of f(x) − f(baseline) at {steps} steps): the "
                          "patch scores do not add up to the change in f; read them with care or raise the steps.",
                          "warn")
    return html + grounding_note(info.get("grounding"))


def grounding_note(grounding: dict | None) -> str:
    """What the heatmap's numbers mean on a generated scene: the share of the relevance inside the true box against
    the box's share of the image (what a heatmap blind to the picture scores), and the pointing game."""
    if not grounding:
        return ""
    asked = grounding["object"]
    if grounding["truth"] == "yes":
        s = grounding["scores"][asked]
        mass = "no red patch" if s["mass_inside"] is None else f"<b>{s['mass_inside']:.0%}</b>"
        ratio = (f" ({s['mass_inside'] / s['area_share']:.1f}x chance)" if s["mass_inside"] is not None
                 and s["area_share"] > 0 else "")
        point = {True: "on", False: "off", None: "undefined (no red patch) for"}[s["pointing_hit"]]
        html = (f"<b>Against the true box</b> (outlined): {mass} of the red relevance lies inside the {esc(asked)}'s "
                f"box, which covers {s['area_share']:.0%} of the image: a heatmap blind to the picture would put "
                f"{s['area_share']:.0%} there{ratio}. The strongest patch is {point} the box (a random patch "
                f"touches it {s['pointing_chance']:.0%} of the time).")
    else:
        parts = []
        for name, s in grounding["scores"].items():
            if s["negative_mass_inside"] is not None:
                tag = " (often seen with it in training)" if name == grounding.get("partner") else ""
                parts.append(f"{s['negative_mass_inside']:.0%} on the {esc(name)}{tag}, whose box covers "
                             f"{s['area_share']:.0%} of the image")
        html = (f"<b>Against the true boxes</b> (outlined): of the blue relevance (the patches pushing toward a "
                f"false yes for the absent {esc(asked)}), " + ("; ".join(parts) if parts else "none is on an object")
                + ". A heatmap blind to the picture would put each box's area share there.")
    legend = ("Outlines: <span style='color:#00a651'><b>green</b></span> the asked object, "
              "<span style='color:#7b2cbf'><b>purple</b></span> the object the asked one was planted to come with, "
              "dark grey the other objects.")
    return f'<div class="grains-hc-grounding">{html} {legend}</div>'


def scene_note_html(scene: dict | None) -> str:
    """What a generated scene holds and why its absent objects were chosen."""
    if not scene:
        return ""
    from grains.vlm.toy.scenes import PLANTED_PROB

    pairs = "; ".join(f"<b>{esc(b)}</b> came with {esc(a)} in {PLANTED_PROB:.0%} of the biased model's training scenes"
                      for b, a in scene.get("adversarial", {}).items())
    return (f'<div class="grains-muted">Generated scene {esc(scene["seed"])} (held out: never seen in training). '
            f"In it: {esc(', '.join(scene['present']))}. Not in it: {esc(', '.join(scene['absent']))} ({pairs}: the "
            "adversarial probe; the other absent object is random). Run the check, then pick a probe: the heatmap "
            "outlines the true boxes.</div>")


def stale_updates(data: dict | None, image: str | None) -> list[Any]:
    """(summary, table) updates when the photo changes: the last check marked outdated when it was made for
    another photo; unchanged otherwise."""
    if not data or (data.get("inputs") or {}).get("image") == image:
        return [gr.update(), gr.update()]
    return [outdated_html(summary_html(data), "the photo changed"), mark_outdated(True)]
