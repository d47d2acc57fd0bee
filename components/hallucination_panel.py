"""Hallucination check view (VLMs): a photo, objects in it and not in it (or proposed in a POPE setting), the model's
yes/no answers with POPE metrics, one probe's patch heatmap, and a vector built from shipped or own probes with a
held-out re-check. Every computation is a call into `grains.vlm.check`; this module only wires and renders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from components.app_state import IMAGES_DIR, Session
from components.attribution_panel import whole
from components.common import (
    MODEL_QUEUE,
    OVERLAY_ALPHA,
    OVERLAY_HEIGHT,
    api_endpoint,
    esc,
    gradio_progress,
    guarded,
    mark_outdated,
    note_html,
    one_status,
    outdated_html,
    safe_image,
    session_model,
)
from components.steering_panel import STRENGTH_INFO, request_stop
from grains.errors import Cancelled, InputError
from grains.serialize import to_jsonable
from grains.steering import MAX_STRENGTH

SETTINGS = [("random", "random"), ("popular (most frequent objects)", "popular"),
            ("adversarial (objects often seen with the present ones)", "adversarial")]
SOURCES = [("the shipped probes (other photos)", "shipped"), ("my probes: some build, the rest are checked", "user")]
HEADERS = ["object", "truth", "answer", "P(yes)", "flag", "steered answer", "steered P(yes)", "steered flag"]
EMPTY = ('<div class="grains-placeholder">Upload a photo (or pick a shipped one), list objects that are in it and '
         'objects that are not, then run the check.</div>')
NO_VLM = ("The hallucination check asks a vision-language model about a photo. Load a VLM in the model bar (e.g. "
          "tiny-random-llava to try the flow, or a real checkpoint such as HuggingFaceTB/SmolVLM-256M-Instruct).")
MAX_HEATMAP_STEPS = 64


def shipped_photos() -> list[tuple[str, str]]:
    """(label, path) of the photos that ship with the app."""
    return [(p.stem, str(p)) for p in sorted(IMAGES_DIR.glob("*.jpg"))]


def shipped_labels(path: str | None) -> tuple[str, str]:
    """The shipped POPE-style labels of a shipped photo as (present, absent) text; empty for any other photo."""
    if not path:
        return "", ""
    from grains.data import load_builtin

    _, rows = load_builtin("pope_style")
    name = Path(path).name
    mine = [r for r in rows if Path(r.image).name == name]
    present = ", ".join(r.object for r in mine if r.answer == "yes")
    absent = ", ".join(r.object for r in mine if r.answer == "no")
    return present, absent


def _objects_match(text: str, objects: list[str]) -> bool:
    from grains.vlm.check import object_key, parse_objects

    return [object_key(o) for o in parse_objects(text, "absent")] == [object_key(o) for o in objects]


def propose(present: str, setting: str, n: Any) -> tuple[str, dict]:
    """Absent objects proposed in `setting` (as text for the box) and the proposal as JSON."""
    from grains.vlm.check import parse_objects, propose_absent

    objects = parse_objects(present, "present")
    if not objects:
        raise InputError("List the objects that are in the photo first: the proposal leaves them out.")
    proposal = propose_absent(objects, setting or "random", whole(n, "The number of absent objects") if n else None)
    return ", ".join(proposal.objects), {"present": present, **proposal.to_dict()}


def _settings_for(present: str, absent: str, proposed: dict | None) -> tuple[str | None, str | None, int | None]:
    """(absent, setting, n) for the library: a proposal the user kept is re-made by the library (same seed), so the
    report names its setting; anything the user typed is used as typed."""
    if proposed and proposed.get("present") == present and absent.strip() and _objects_match(absent,
                                                                                             proposed["objects"]):
        return None, proposed["setting"], len(proposed["objects"])
    return absent, None, None


def run_check(session: Session, image: str | None, present: str, absent: str, setting: str | None,
              proposed: dict | None = None, progress: Any = None) -> dict:
    """The unsteered check of the photo; returns the report as JSON (with the inputs it came from)."""
    from grains.vlm.check import check_image

    lm = session_model(session)
    if not image:
        raise InputError("Upload a photo or pick a shipped one first.")
    absent_value, setting_value, n = _settings_for(present, absent or "", proposed)
    if not (absent_value or "").strip() and setting_value is None:
        setting_value = setting or "random"
    report = check_image(lm, image, present, absent_value or None, setting_value, n_absent=n, progress=progress)
    data = report.to_dict()
    data["inputs"] = {"image": image, "present": present, "absent": absent_value, "setting": setting_value,
                      "n_absent": n, "model": session.model_name}
    return data


def run_recheck(session: Session, last: dict | None, source: str, max_build: Any, steps: Any, suggested: bool,
                layer: Any, strength: Any, progress: Any = None, should_stop: Any = None) -> dict:
    """Build a vector (shipped or own probes) and re-check the last check's photo on probes it never saw."""
    from grains.vlm.check import steer_and_recheck

    lm = session_model(session)
    if not last or (last.get("inputs") or {}).get("model") != session.model_name:
        raise InputError("Run the check first (with this model): the re-check asks the same probes.")
    inputs = last["inputs"]
    report = steer_and_recheck(
        lm, inputs["image"], inputs["present"], inputs["absent"], inputs["setting"], source=source or "shipped",
        max_build=whole(max_build, "The number of shipped probes"), steps=whole(steps, "IG steps"),
        layer=None if suggested or layer is None else whole(layer, "The layer"),
        strength=None if suggested or strength is None else float(strength),
        n_absent=inputs["n_absent"], progress=progress, should_stop=should_stop)
    data = report.to_dict()
    data["inputs"] = inputs
    return data


def probe_heatmap(session: Session, last: dict | None, index: Any, steps: Any, alpha: float) -> tuple[Any, str]:
    """The photo with probe `index`'s contrastive patch heatmap, and an HTML note (legend, convergence)."""
    from grains.vlm.check import where_the_model_looked

    if not last:
        raise InputError("Run the check first.")
    probes = last["probes"]
    i = whole(index, "The probe")
    if not 0 <= i < len(probes):
        raise InputError(f"There is no probe {i}.")
    lm = session_model(session)
    if last["inputs"].get("model") != session.model_name:
        raise InputError("The model changed since this check: run it again.")
    probe = probes[i]
    steps = whole(steps, "IG steps")
    if not 1 <= steps <= MAX_HEATMAP_STEPS:
        raise InputError(f"IG steps must be from 1 to {MAX_HEATMAP_STEPS}.")
    look = where_the_model_looked(lm, last["inputs"]["image"], probe["object"], truth=probe["truth"], steps=steps)
    info = look.summary()
    overlay = look.overlay(last["inputs"]["image"], alpha=float(alpha)) if look.grid is not None else None
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
    return overlay, html


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.0%}"


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


@dataclass
class HallucinationPanel:
    main: gr.Column
    no_vlm: gr.HTML
    model_note: gr.HTML
    last: gr.State
    summary: gr.HTML
    table: gr.Dataframe
    probe: gr.Radio
    heatmap: gr.Image
    layer: gr.Slider

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.main, self.no_vlm, self.model_note, self.last, self.summary, self.table, self.probe,
                self.heatmap, self.layer]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        vlm = bool(lm.is_vlm)
        note = ""
        if vlm and lm.random_weights:
            note = note_html(f"<b>{esc(lm.model_id)} has random weights:</b> the check runs, but its answers mean "
                             "nothing. Use it to try the flow.", "warn")
        top = max(0, lm.num_layers - 1)
        return [gr.update(visible=vlm), gr.update(visible=not vlm), note, None, EMPTY,
                gr.update(value=[], elem_classes=[]), gr.update(choices=[], value=None), None,
                gr.update(maximum=top, value=min(top, lm.num_layers // 2))]


def stale_updates(data: dict | None, image: str | None) -> list[Any]:
    """(summary, table) updates when the photo changes: the last check marked outdated when it was made for
    another photo; unchanged otherwise."""
    if not data or (data.get("inputs") or {}).get("image") == image:
        return [gr.update(), gr.update()]
    return [outdated_html(summary_html(data), "the photo changed"), mark_outdated(True)]


def build_hallucination_panel(state: gr.State) -> HallucinationPanel:
    """The Hallucination check tab."""
    last = gr.State(None)
    proposed = gr.State(None)
    no_vlm = gr.HTML(note_html(esc(NO_VLM), "info"), elem_id="grains-hc-no-vlm")
    with gr.Column(visible=False, elem_id="grains-hc-main") as main:
        model_note = gr.HTML(elem_id="grains-hc-model-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                image = safe_image(label="Photo", height=260, sources=["upload", "clipboard"],
                                   elem_id="grains-hc-image")
                photos = shipped_photos()
                shipped = gr.Dropdown(photos, value=None, label="…or pick a shipped photo (fills in its labels)",
                                      elem_id="grains-hc-shipped")
                present = gr.Textbox(label="Objects IN the photo (comma-separated)", max_lines=2,
                                     placeholder="e.g. cup, spoon", elem_id="grains-hc-present")
                absent = gr.Textbox(label="Objects NOT in the photo (comma-separated; empty = propose them)",
                                    max_lines=2, placeholder="e.g. fork, laptop", elem_id="grains-hc-absent")
                with gr.Row(equal_height=False):
                    setting = gr.Radio(SETTINGS, value="adversarial", label="Propose absent objects (POPE setting)",
                                       elem_id="grains-hc-setting", scale=3)
                    propose_button = gr.Button("Propose", size="sm", elem_id="grains-hc-propose", scale=1,
                                               elem_classes=["grains-button-secondary"])
                proposal_note = gr.HTML(elem_id="grains-hc-proposal")
                gr.Markdown("The model is asked “Is there a {object} in the image?” for each object, with your words "
                            "as typed. The vocabulary is the 80 COCO class names; its popularity and co-occurrence "
                            "table were written for this project, not measured on COCO.",
                            elem_classes=["grains-muted"])
                run_button = gr.Button("Run the check", variant="primary", elem_id="grains-hc-run")
            with gr.Column(scale=3, min_width=420):
                summary = gr.HTML(EMPTY, elem_id="grains-hc-summary", elem_classes=["grains-card"])
                table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="grains-hc-table",
                                     label="Per probe (click a row to see where the model looked)")
        gr.Markdown("### Where the model looked")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                probe = gr.Radio([], value=None, label="Probe", elem_id="grains-hc-probe")
                heat_steps = gr.Slider(1, MAX_HEATMAP_STEPS, value=8, step=1, label="IG steps",
                                       elem_id="grains-hc-heat-steps")
                alpha = gr.Slider(0, 1, value=OVERLAY_ALPHA, step=0.05, label="Overlay opacity (for the next heatmap)")
                heat_note = gr.HTML(elem_id="grains-hc-heat-note")
            with gr.Column(scale=3, min_width=420):
                heatmap = gr.Image(label="Contrastive patch heatmap (truthful vs other answer)", type="pil",
                                   interactive=False, height=OVERLAY_HEIGHT, elem_id="grains-hc-heatmap")
        gr.Markdown("### Steer and re-check")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=340):
                source = gr.Radio(SOURCES, value="shipped", label="Build the vector from", elem_id="grains-hc-source")
                max_build = gr.Slider(2, 36, value=12, step=1, label="Shipped probes to build from (yes/no balanced)")
                build_steps = gr.Slider(1, 32, value=8, step=1, label="IG steps per build example")
                suggested = gr.Checkbox(value=True, label="Use the vector's cross-validated layer and strength",
                                        elem_id="grains-hc-suggested")
                with gr.Row():
                    layer = gr.Slider(0, 31, value=0, step=1, label="Layer", elem_id="grains-hc-layer")
                    strength = gr.Slider(-MAX_STRENGTH, MAX_STRENGTH, value=0.5, step=0.05, label="Strength",
                                         elem_id="grains-hc-strength", info=STRENGTH_INFO)
                with gr.Row():
                    recheck_button = gr.Button("Build vector and re-check", variant="primary",
                                               elem_id="grains-hc-recheck")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="grains-hc-stop", scale=0, min_width=90)
                gr.Markdown("Chosen = the truthful answer (as in the paper's MMHal setting). The re-check asks only "
                            "probes the vector was not built from; a shipped probe about this same photo is left out.",
                            elem_classes=["grains-muted"])
            with gr.Column(scale=3, min_width=420):
                split = gr.HTML(elem_id="grains-hc-split")
                with gr.Accordion("Report (JSON)", open=False):
                    raw = gr.JSON(elem_id="grains-hc-json")

    panel = HallucinationPanel(main=main, no_vlm=no_vlm, model_note=model_note, last=last, summary=summary,
                               table=table, probe=probe, heatmap=heatmap, layer=layer)
    result_outputs = [last, summary, table, probe, split, raw, heatmap, heat_note]

    def results(data: dict) -> list[Any]:
        return [data, summary_html(data), gr.update(value=table_rows(data), elem_classes=[]),
                gr.update(choices=probe_choices(data), value=None), split_html(data), data, None, ""]

    def photo_changed(data: dict | None, img: Any) -> list[Any]:
        """A new photo: the last check's results stay visible but are marked outdated (they were for another
        photo) until the check runs again. Not preprocessed (a bad file is reported once, by the check itself)."""
        path = img.get("path") if isinstance(img, dict) else img
        return stale_updates(data, path)

    image.change(photo_changed, inputs=[last, image], outputs=[summary, table], queue=False, preprocess=False,
                 api_visibility="private", show_progress="hidden")

    @guarded
    def pick_shipped(path: str | None) -> list[Any]:
        if not path:
            return [gr.update(), gr.update(), gr.update()]
        present_text, absent_text = shipped_labels(path)
        return [path, present_text, absent_text]

    shipped.input(pick_shipped, inputs=shipped, outputs=[image, present, absent], api_visibility="private")

    @guarded
    def propose_ui(present_text: str, setting_value: str) -> list[Any]:
        text, data = propose(present_text, setting_value, None)
        note = esc(f"Proposed in the {data['setting']} setting (as many as the present objects). "
                   + " ".join(data["notes"]))
        return [text, data, f'<div class="grains-muted">{note}</div>']

    propose_button.click(propose_ui, inputs=[present, setting], outputs=[absent, proposed, proposal_note],
                         api_visibility="private")

    @guarded
    def check_ui(session: Session, img: str | None, present_text: str, absent_text: str, setting_value: str,
                 prop: dict | None, progress: gr.Progress = gr.Progress()) -> list[Any]:
        data = run_check(session, img, present_text, absent_text, setting_value, prop,
                         progress=gradio_progress(progress))
        return results(data)

    run_button.click(check_ui, inputs=[state, image, present, absent, setting, proposed], outputs=result_outputs,
                     concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(summary))

    @guarded
    def heat_ui(session: Session, data: dict | None, index: Any, steps: Any, opacity: float,
                progress: gr.Progress = gr.Progress()) -> list[Any]:
        if index is None or not data:
            return [None, ""]
        progress(0.2, desc="Integrated gradients over the patches…")
        return list(probe_heatmap(session, data, index, steps, opacity))

    probe.change(heat_ui, inputs=[state, last, probe, heat_steps, alpha], outputs=[heatmap, heat_note],
                 concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(heat_note))

    def row_selected(evt: gr.SelectData) -> Any:
        index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        return gr.update(value=int(index))

    table.select(row_selected, inputs=None, outputs=probe, api_visibility="private", queue=False)

    @guarded
    def recheck_ui(session: Session, data: dict | None, src: str, n_build: Any, steps: Any, use_suggested: bool,
                   layer_value: Any, strength_value: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:
        estimate = gradio_progress(progress)
        try:
            report = run_recheck(session, data, src, n_build, steps, use_suggested, layer_value, strength_value,
                                 progress=estimate, should_stop=lambda: session.cancel)
        except Cancelled:
            stopped = note_html(f"Stopped{esc(' after ' + estimate.text if estimate.text else '')}; the check above "
                                "is unchanged.", "warn")
            return [gr.update(), gr.update(), gr.update(), gr.update(), stopped, gr.update(), gr.update(),
                    gr.update()]
        finally:
            session.cancel, session.build_pending = False, False
        return results(report)

    def arm(session: Session) -> str:
        """At once on click (outside the queue), so Stop also works while the re-check waits in the queue."""
        session.cancel, session.build_pending = False, True
        return ""

    recheck_button.click(arm, inputs=state, outputs=split, queue=False, api_visibility="private").then(
        recheck_ui, inputs=[state, last, source, max_build, build_steps, suggested, layer, strength],
        outputs=result_outputs, concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(split))

    def stop(session: Session) -> str:
        if not request_stop(session):
            return note_html("Nothing is running.", "info")
        return note_html("Stopping after the current step…", "warn")

    stop_button.click(stop, inputs=state, outputs=split, queue=False, api_visibility="private")

    # API: /check_image (image, present, absent, setting, build_from, strength) -> report JSON
    with gr.Column(visible=False):
        api_in = [gr.File(label="image", type="filepath"), gr.Textbox(label="present"), gr.Textbox(label="absent"),
                  gr.Textbox(value="", label="setting"), gr.Textbox(value="", label="build_from"),
                  gr.Number(value=None, label="strength")]
        api_out = [gr.JSON(label="report")]

    def api_check(session: Session, image_file: str | None, present_text: str, absent_text: str, setting_value: str,
                  build_from: str, strength_value: Any) -> dict:
        """Hallucination check of one photo; with build_from (shipped/probes) a vector is built and the photo
        re-checked on held-out probes."""
        data = run_check(session, image_file, present_text or "", absent_text or "", setting_value or None)
        if build_from:
            if build_from not in ("shipped", "probes"):
                raise InputError("build_from must be '', 'shipped' or 'probes'.")
            chosen = None if strength_value is None or strength_value == "" else float(strength_value)
            data = run_recheck(session, data, "user" if build_from == "probes" else "shipped", 12, 8, chosen is None,
                               None, chosen)
        return to_jsonable(data)

    api_endpoint(api_check, [state, *api_in], api_out, "check_image")
    return panel
