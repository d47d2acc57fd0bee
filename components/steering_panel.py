"""Steering vector: build one (from the current example or a dataset, with progress and cancel), save and load it,
and pick the layer, strength and norm-rescaling used to steer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from components.app_state import Session, scratch_dir
from components.attribution_panel import AttributionPanel, open_image, whole
from components.common import (
    MODEL_QUEUE,
    api_endpoint,
    chosen_format,
    esc,
    fmt_float,
    gradio_progress,
    guarded,
    note_html,
    one_status,
    session_model,
    warn,
)
from components.datasets import UPLOAD, as_pairs, check_kind_fits, dataset_choices, load_rows
from grains.errors import Cancelled, InputError, VectorError
from grains.serialize import to_jsonable
from grains.side_effects import DEFAULT_KL_BUDGET
from grains.steering import MAX_STRENGTH

SOURCES = [("the current example (Attribute tab)", "example"), ("a dataset", "dataset")]
METHODS = [("GrAInS (default): mean(d+) − mean(d−) of the ablation deltas", "grains"),
           ("GrAInS, mean of deltas (same as the default)", "mean"),
           ("GrAInS, PCA: PC1(d+) − PC1(d−), signs aligned", "pca"), ("CAA: mean h(s+) − h(s−)", "caa")]
MAX_STRENGTH_UI = MAX_STRENGTH  # one range everywhere: -4 .. 4
STRENGTH_HELP = "negative steers the other way (toward the rejected answers)"
STRENGTH_INFO = (f"-{MAX_STRENGTH:g} to {MAX_STRENGTH:g}, in units of the layer's median hidden-state norm; "
                 f"{STRENGTH_HELP}")
ALLOW_OTHER_LABEL = "Allow a vector from another model"
NO_VECTOR = ("No steering vector in this session yet. Build one below (from the example you attributed or from a "
             "dataset) or load a .safetensors file.")
CV_INFO = ("strength 0 is a candidate; nested cross-validation estimates the gain, a win needs a paired test; "
           f"cells over the KL budget ({DEFAULT_KL_BUDGET:g} nats on neutral prompts) are left out")
METHOD_NAMES = {"grains": "GrAInS", "mean": "GrAInS (mean)", "pca": "PCA", "caa": "CAA"}


def require_vector(session: Session) -> Any:
    """The session's vector, or a clear InputError when there is none."""
    if session.vector is None:
        raise InputError("This session has no steering vector: build one or load one in the Steer tab first.")
    return session.vector


def check_vector_model(vector: Any, lm: Any, allow_other_model: bool) -> None:
    """The one rule for a vector from another model, with the one message every panel shows."""
    vector.check_fits(lm.model_id, lm.hidden_size, lm.num_layers, allow_other_model=True)  # shapes: always
    if vector.model_id != lm.model_id and not allow_other_model:
        raise VectorError(f"This vector was built for {vector.model_id!r}, not for {lm.model_id!r}: it is refused. "
                          f"Tick \"{ALLOW_OTHER_LABEL}\" beside Load vector (Steer tab) to use it anyway.")


def session_steering(session: Session, lm: Any, layer: Any, strength: Any, normalize: Any = True) -> Any:
    """The one `grains.Steering` every panel passes to the library: the session's vector at the Steer tab's layer,
    strength and keep-the-norm switch, checked once (layer range, strength -4..4, the other-model rule)."""
    from grains.steering import Steering, check_strength

    vector = require_vector(session)
    check_vector_model(vector, lm, session.allow_other_model)
    value = check_strength(strength)
    return Steering.create(lm, vector, whole(layer, "The layer"), value, normalize=bool(normalize),
                           allow_other_model=session.allow_other_model)


def _fact(name: str, value: Any) -> str:
    return f'<div class="grains-fact"><span>{esc(name)}</span><b>{esc(value)}</b></div>'


def _ci(ci: Any) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return ""
    return f" (95% CI {fmt_float(ci[0])} to {fmt_float(ci[1])})"


def _p(value: Any) -> str:
    try:
        return f"{float(value):.2g}"
    except (TypeError, ValueError):
        return "n/a"


def selection_html(v: Any, sel: dict[str, Any]) -> str:
    """The selection: the nested (unbiased) estimate with its test, a win only per `beats_unsteered`, the
    "best of N" maximum labelled as such. Vectors chosen by the older, biased selection say so."""
    if sel.get("estimate") != "nested cross-validation":
        return note_html("<b>Chosen by the older cross-validation</b>, which reported the best of many cells as its "
                         "estimate (biased upward), so its claim that steering helps is not reliable. Rebuild the "
                         "vector for an unbiased estimate, or check it on held-out rows in the Evaluate tab.", "warn")
    folds = sel.get("folds")
    estimate = (f"mean margin gain {fmt_float(sel.get('cv_margin_gain'))} nats{_ci(sel.get('cv_margin_gain_ci'))}, "
                f"p = {_p(sel.get('p_value'))} ({esc(sel.get('test') or 'paired test')})")
    accuracy = ""
    if sel.get("cv_accuracy") is not None and sel.get("cv_accuracy_unsteered") is not None:
        accuracy = (f"; accuracy {float(sel['cv_accuracy_unsteered']):.0%} unsteered → "
                    f"{float(sel['cv_accuracy']):.0%} steered (p = {_p(sel.get('cv_accuracy_p_value'))})")
    where = f"nested {folds}-fold cross-validation, items the choice never saw"
    if sel.get("beats_unsteered"):
        html = note_html(f"<b>Beats unsteered</b> ({esc(where)}): {estimate}{accuracy}.", "ok")
    elif float(v.default_strength or 0.0) == 0.0:
        html = note_html(f"<b>The model did not move.</b> No layer and strength beat the unsteered model "
                         f"({esc(where)}: {estimate}{accuracy}), so the suggested strength is 0: steering with this "
                         "suggestion leaves every output exactly as it was.", "warn")
    else:
        html = note_html(f"<b>Not shown to beat unsteered</b> ({esc(where)}): {estimate}{accuracy}.", "info")
    best = sel.get("best_of_n") or {}
    if best.get("layer") is not None:
        html += (f'<div class="grains-muted"><b>{esc(best.get("label", "best of N"))}</b> cells in plain '
                 f"cross-validation: layer {esc(best['layer'])}, strength {float(best.get('strength', 0)):g}, margin "
                 f"gain {fmt_float(best.get('margin_gain'))} nats, accuracy {float(best.get('accuracy', 0)):.0%}. "
                 "A maximum over cells, biased upward: not an estimate.</div>")
    excluded = sel.get("excluded_cells") or []
    if excluded:
        html += (f'<div class="grains-muted">{len(excluded)} cell{"s" if len(excluded) != 1 else ""} left out of the '
                 "choice: over the side-effect budget (mean KL on neutral prompts).</div>")
    return html


def direction_html(v: Any, layer: Any) -> str:
    """The raw direction at `layer`: its norm (stored while building) and how far v+ and v- cancelled."""
    info = v.direction_stats.get(int(layer)) if layer is not None else None
    if not info:
        return ""
    parts = [f"raw norm |v| = {fmt_float(info.get('raw_norm'), 4)}"]
    if info.get("relative_norm") is not None:
        parts[0] += f" ({float(info['relative_norm']):.2%} of the layer's median hidden-state norm)"
    if info.get("cosine_plus_minus") is not None:
        parts.append(f"cos(v+, v−) = {fmt_float(info['cosine_plus_minus'])}")
    if info.get("plus_norm") is not None and info.get("minus_norm") is not None:
        parts.append(f"|v+| = {fmt_float(info['plus_norm'], 4)}, |v−| = {fmt_float(info['minus_norm'], 4)}")
    if info.get("cancellation") is not None:
        parts.append(f"|v+ − v−| / (|v+| + |v−|) = {float(info['cancellation']):.1%}")
    return f'<div class="grains-muted"><b>Direction at layer {esc(layer)}:</b> {esc("; ".join(parts))}.</div>'


def side_effects_html(v: Any) -> str:
    """What the suggested setting costs on neutral text (stored by build)."""
    side = (v.meta or {}).get("side_effects")
    if side and side.get("reading"):
        kind = "warn" if side.get("within_budget") is False else "info"
        return note_html(f"<b>Side effects</b> at the suggested layer and strength: {esc(side['reading'])}.", kind)
    if float(v.default_strength or 0.0) == 0.0:
        return '<div class="grains-muted">Side effects: none at strength 0 (outputs are unchanged).</div>'
    return ('<div class="grains-muted">Side effects of the suggested setting were not recorded with this vector: '
            "the Evaluate tab measures them (KL on neutral prompts, repetition) beside every steered result.</div>")


def vector_card(session: Session) -> str:
    """HTML: what the session's vector is, what it suggests, its nested cross-validated estimate, the direction's
    raw norm and v+/v- cosine, its warnings and its side effects."""
    v = session.vector
    if v is None:
        return note_html(esc(NO_VECTOR), "info")
    meta = v.meta or {}
    method = METHOD_NAMES.get(v.method, v.method)
    k = f", k = {v.k}" if v.k else ""
    built_for = v.model_id + (" (another model: allowed)" if session.allow_other_model and
                              session.model_name != v.model_id else "")
    facts = [_fact("Method", f"{method}{k}"), _fact("Examples", v.n_examples), _fact("Built for", built_for)]
    if meta.get("prompt_format"):
        facts.append(_fact("Prompt format", meta["prompt_format"]))
    facts += [_fact("Suggested layer", v.default_layer), _fact("Suggested strength", f"{v.default_strength:g}")]
    html = (f'<div class="grains-vector-title">Vector: {esc(session.vector_label)}</div>'
            f'<div class="grains-facts">{"".join(facts)}</div>')
    sel = meta.get("selection")
    if sel:
        html += selection_html(v, sel)
    elif meta.get("note"):
        html += note_html(esc(meta["note"]), "info")
    html += direction_html(v, v.default_layer)
    for warning in v.warnings():
        html += note_html(esc(warning), "warn")
    html += side_effects_html(v)
    return html


def cv_table(session: Session) -> list[list[Any]]:
    """The plain cross-validation table (every cell; its maximum is a best-of-N figure, not an estimate)."""
    v = session.vector
    sel = (v.meta or {}).get("selection") if v is not None else None
    rows = []
    for row in (sel or {}).get("table", []):
        layer = "unsteered" if row.get("layer") is None else row["layer"]
        rows.append([layer, row.get("strength"), round(row.get("margin_gain", 0.0), 4),
                     round(row.get("margin_gain_std", 0.0), 4), round(row.get("accuracy", 0.0), 3)])
    return rows


def _slug(text: Any, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text or "")).strip("-.")[:limit].strip("-.")


def vector_file_name(vector: Any, model_name: str, concept: str | None = None) -> str:
    """A descriptive download name: grains_<model>_<concept or dataset>_<method>_L<suggested layer>.safetensors,
    e.g. grains_gemma-3-270m_truthfulqa_grains_L9.safetensors (a hub id keeps only its last part)."""
    model = _slug(str(model_name).rstrip("/").split("/")[-1]) or "model"
    parts = ["grains", model]
    if _slug(concept):
        parts.append(_slug(concept))
    parts.append(_slug(vector.method) or "vector")
    if vector.default_layer is not None:
        parts.append(f"L{int(vector.default_layer)}")
    return "_".join(parts) + ".safetensors"


def build_concept(source: str, dataset: str | None, upload: str | None) -> str:
    """What a build was made from, for the file name: the dataset's name, the uploaded file's stem, or "example"."""
    if source == "example":
        return "example"
    if dataset == UPLOAD and upload:
        return Path(str(upload)).stem
    return str(dataset or "dataset")


def save_copy(vector: Any, model_name: str, concept: str | None = None) -> str:
    """Write the vector to a fresh temp folder for download (under `vector_file_name`); returns the path."""
    folder = scratch_dir("vector-")
    return str(vector.save(folder / vector_file_name(vector, model_name, concept)))


def reusable_attribution(session: Session, steps: Any, target: str | None) -> Any:
    """The attribution on screen when it was made for the current example with the build's settings (IG steps,
    target, the zero baseline build uses, the prompt format it was attributed in), so building from the current
    example needs no second IG run; None otherwise."""
    result, i = session.attribution, session.inputs or {}
    if result is None or not i:
        return None
    try:
        same_steps = int(i.get("steps")) == int(float(steps))
    except (TypeError, ValueError):
        return None
    if same_steps and i.get("target") == (target or "sequence") and i.get("baseline", "zero") == "zero":
        return result
    return None


def slider_updates(session: Session, lm: Any) -> list[Any]:
    """Layer slider (max = layers - 1) and strength at the vector's suggestions."""
    v = session.vector
    layer = v.default_layer if v is not None and v.default_layer is not None else lm.num_layers // 2
    strength = v.default_strength if v is not None else 0.5
    layer = min(max(int(layer), 0), lm.num_layers - 1)
    strength = min(max(float(strength), -MAX_STRENGTH_UI), MAX_STRENGTH_UI)
    return [gr.update(maximum=lm.num_layers - 1, value=layer), gr.update(value=strength)]


def build_examples(session: Session, lm: Any, source: str, dataset: str | None, upload: str | None,
                   rows: Any, offset: Any) -> tuple[list[Any], str, dict | None]:
    """(examples, description, overrides) for building."""
    if source == "example":
        if session.attribution is None or not session.inputs:
            raise InputError("Run an attribution first (Attribute tab), or build from a dataset.")
        from grains.data import PreferenceExample

        i = session.inputs
        ex = PreferenceExample(prompt=i["prompt"], chosen=i["chosen"], rejected=i["rejected"], image=i.get("image"))
        ov = {k: list(v) for k, v in session.overrides.items()}
        return [ex], "the current example", {"plus": ov, "minus": dict(ov)}
    kind, data, description = load_rows(dataset, upload, rows, offset)
    check_kind_fits(kind, lm.is_vlm)
    examples = as_pairs(kind, data)
    if lm.is_vlm is False and any(getattr(e, "image", None) for e in examples):
        raise InputError("These examples come with images: load a vision-language model to build from them.")
    return examples, description, None


def run_build(session: Session, source: str, dataset: str | None, upload: str | None, rows: Any, offset: Any,
              method: str, k: Any, steps: Any, target: str, content_only: bool, skip_punctuation: bool,
              cross_validate: bool, progress: Any = None, normalize: Any = True, prompt_format: Any = None) -> Any:
    """Build a vector into the session (cancellable through `session.cancel`, which the caller resets).

    The keep-the-norm switch reaches the cross-validated choice; the prompt format is the Attribute tab's (for the
    current example: the format it was attributed with, so the token overrides point at the same tokens)."""
    from grains.build import build_vector

    lm = session_model(session)
    examples, description, overrides = build_examples(session, lm, source, dataset, upload, rows, offset)
    fmt = session.inputs.get("prompt_format") if source == "example" else chosen_format(prompt_format)
    if source == "example" and session.inputs.get("image"):
        open_image(session.inputs["image"], lm)  # validate once, with a clear message
    reuse = reusable_attribution(session, steps, target) if source == "example" else None
    result = build_vector(lm, examples, method=method or "grains", k=whole(k, "k"), steps=whole(steps, "IG steps"),
                          target=target or "sequence", content_only=bool(content_only),
                          skip_punctuation=bool(skip_punctuation), select=bool(cross_validate),
                          progress=progress, should_stop=lambda: session.cancel, overrides=overrides,
                          normalize=bool(normalize), prompt_format=fmt,
                          attributions=[reuse] if reuse is not None else None)
    vector = result.vector
    label = f"{method} from {description} ({vector.n_examples} example{'s' if vector.n_examples != 1 else ''})"
    concept = build_concept(source, dataset, upload)
    vector.meta = {**(vector.meta or {}), "concept": concept}
    session.set_vector(vector, label, save_copy(vector, session.model_name, concept))
    summary = result.summary()
    summary["reused_attribution"] = reuse is not None and (method or "grains") != "caa"
    summary["skipped"] = summary.get("skipped", [])[:10]
    session.last_build = {"source": source, "dataset": dataset if source == "dataset" else None, "rows": rows,
                          "offset": offset, "method": method, "k": k, "steps": steps, "select": cross_validate,
                          "description": description, "normalize": bool(normalize),
                          "prompt_format": result.vector.meta.get("prompt_format"), "model": session.model_name,
                          "file_name": Path(session.vector_path or "").name}
    return to_jsonable(summary)


def load_vector_file(session: Session, path: str | None, allow_other_model: Any = False) -> list[str]:
    """Load and validate a vector for the session's model; returns warnings (empty when it fits exactly).

    A vector built for another model is refused (one message, as on every other path) unless `allow_other_model`;
    then it is loaded with a warning and every panel steers with it under that permission."""
    from grains.vectors import load_vector

    if not path:
        raise InputError("Choose a .safetensors vector file to load.")
    lm = session_model(session)
    vector = load_vector(path)
    check_vector_model(vector, lm, bool(allow_other_model))
    warnings = []
    other = vector.model_id != lm.model_id
    if other:
        warnings.append(f"This vector was built for {vector.model_id!r}, not {lm.model_id!r}; it is used because "
                        f"you allowed a vector from another model. Check its effect before trusting it.")
    concept = (vector.meta or {}).get("concept") or "loaded"
    session.set_vector(vector, f"loaded from {Path(path).name}", save_copy(vector, session.model_name, concept),
                       allow_other_model=other)
    return warnings


@dataclass
class SteeringPanel:
    layer: gr.Slider
    strength: gr.Slider
    normalize: gr.Checkbox
    card: gr.HTML
    table: gr.Dataframe
    download: gr.DownloadButton
    source: gr.Radio
    dataset: gr.Dropdown
    rows: gr.Slider
    method: gr.Dropdown
    cross_validate: gr.Checkbox
    vector_changed: list[Any] | None = None
    status: Any = None  # gr.HTML: the build's progress, queue place, result or error (one place)

    @property
    def refresh_outputs(self) -> list[Any]:
        return [self.card, self.table, self.download, self.layer, self.strength, self.dataset, self.status]

    def refresh(self, session: Session, lm: Any) -> list[Any]:
        """After a page load or a model switch: the card, table and sliders for the session's vector now (the
        vector card is rebuilt, so it never describes a vector of the previous model) and the build status reset
        (an old "Built in ..." no longer applies)."""
        return [vector_card(session), cv_table(session), download_update(session), *slider_updates(session, lm),
                gr.update(choices=dataset_choices(lm.is_vlm), value="pope_style" if lm.is_vlm else "truthfulqa"),
                status_after_refresh(session)]


def status_after_refresh(session: Session) -> str:
    """The build status after a page load or model switch: empty when nothing was built with this model, else a
    note that the previous build's status was for another model."""
    last = session.last_build or {}
    if last and last.get("model") not in (None, session.model_name):
        return note_html(f"The model changed to {esc(session.model_name)}: the last build was for "
                         f"{esc(last.get('model'))}; the card above shows the vector this session uses now.", "info")
    return ""


def build_note(summary: dict[str, Any], cross_validated: bool) -> str:
    """The build's result in one note: a plain warn note when the model did not move (strength 0 suggested),
    never a green success box for that; ok otherwise."""
    n = summary["n_examples"]
    skipped = summary.get("skipped") or []
    took = f"Built in {summary['seconds']:.0f} s from {n} example{'s' if n != 1 else ''}"
    if summary.get("reused_attribution"):
        took += " (reused the attribution on screen: no second IG run)"
    extra = f" {esc(summary.get('note', ''))}" if summary.get("note") else ""
    if skipped:
        extra += f" {len(skipped)} examples skipped (first: {esc(skipped[0]['reason'])})."
    if cross_validated and float(summary.get("strength") or 0.0) == 0.0:
        return note_html(f"<b>The model did not move: strength 0 suggested.</b> {took}.{extra}", "warn")
    return note_html(f"{took}.{extra}", "ok")


def download_update(session: Session) -> Any:
    path = session.vector_path if session.vector is not None else None
    return gr.update(value=path, interactive=path is not None)


def build_steering_panel(state: gr.State, attr: AttributionPanel) -> SteeringPanel:
    """The Steer tab (vector and steering controls)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=380):
            card = gr.HTML(elem_id="grains-vector-card", elem_classes=["grains-card"])
            with gr.Row():
                download = gr.DownloadButton("Save vector (.safetensors)", size="sm", interactive=False,
                                             elem_id="grains-save-vector", variant="secondary",
                                             elem_classes=["grains-button-secondary"])
                upload_vector = gr.UploadButton("Load vector…", file_types=[".safetensors"], size="sm",
                                                elem_id="grains-load-vector", variant="secondary",
                                                elem_classes=["grains-button-secondary"])
                allow_other = gr.Checkbox(value=False, label=ALLOW_OTHER_LABEL, elem_id="grains-allow-other-model",
                                          info="off: a vector built for another model is refused")
            with gr.Accordion("Cross-validation table (plain CV, every layer × strength cell; its maximum is a "
                              "best-of-N figure, not an estimate)", open=False):
                table = gr.Dataframe(headers=["layer", "strength", "margin gain (nats)", "fold spread", "accuracy"],
                                     interactive=False, wrap=True)
            gr.Markdown("### Steering controls")
            with gr.Row():
                layer = gr.Slider(0, 17, value=9, step=1, label="Layer", elem_id="grains-layer",
                                  info="decoder layer whose output is steered")
                strength = gr.Slider(-MAX_STRENGTH_UI, MAX_STRENGTH_UI, value=0.5, step=0.05, label="Strength λ",
                                     elem_id="grains-strength", info=STRENGTH_INFO)
            with gr.Row():
                normalize = gr.Checkbox(value=True, label="Keep each token's norm (h'' = h' · |h| / |h'|)",
                                        elem_id="grains-normalize",
                                        info="used by Compare, Evaluate, the sweeps and the build's cross-validation")
                reset = gr.Button("Use the vector's suggestion", size="sm", variant="secondary",
                                  elem_classes=["grains-button-secondary"])
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### Build a vector")
            source = gr.Radio(SOURCES, value="dataset", label="From")
            dataset = gr.Dropdown(dataset_choices(False), value="truthfulqa", label="Dataset",
                                  elem_id="grains-build-dataset")
            upload = gr.File(label="Dataset file (JSONL or CSV: prompt, chosen, rejected [, image])",
                             file_types=[".jsonl", ".json", ".csv", ".tsv"], type="filepath", visible=False,
                             height=100)
            with gr.Row():
                rows = gr.Slider(1, 64, value=12, step=1, label="Rows", elem_id="grains-build-rows")
                offset = gr.Number(value=0, precision=0, minimum=0, label="First row", min_width=90)
            method = gr.Dropdown(METHODS, value="grains", label="Method")
            cross_validate = gr.Checkbox(value=True, label="Choose layer and strength by 3-fold cross-validation",
                                         info=CV_INFO)
            gr.Markdown("Top-k, content-only, IG steps, target and prompt format come from the Attribute tab; the "
                        "keep-the-norm switch from the steering controls.",
                        elem_classes=["grains-muted"])
            with gr.Row():
                build = gr.Button("Build vector", variant="primary", elem_id="grains-build")
                cancel = gr.Button("Stop", variant="stop", elem_id="grains-cancel", scale=0, min_width=110)
            status = gr.HTML(elem_id="grains-build-status", elem_classes=["grains-status"])

    panel = SteeringPanel(layer=layer, strength=strength, normalize=normalize, card=card, table=table,
                          download=download, source=source, dataset=dataset, rows=rows, method=method,
                          cross_validate=cross_validate, status=status)

    def source_changed(src: str, name: str) -> list[Any]:
        from_data = src == "dataset"
        return [gr.update(visible=from_data), gr.update(visible=from_data and name == UPLOAD),
                gr.update(visible=from_data), gr.update(visible=from_data), gr.update(visible=from_data)]

    for trigger in (source.change, dataset.change):
        trigger(source_changed, inputs=[source, dataset], outputs=[dataset, upload, rows, offset, cross_validate],
                queue=False, api_visibility="private")

    vector_outputs = [card, table, download, layer, strength]

    def vector_view(session: Session) -> list[Any]:
        lm = session_model(session)
        return [vector_card(session), cv_table(session), download_update(session), *slider_updates(session, lm)]

    @guarded
    def build_ui(session: Session, src: str, name: str | None, up: str | None, n_rows: Any, first: Any, meth: str,
                 k: Any, steps: Any, tgt: str, co: bool, sp: bool, cv: bool, norm: bool = True, fmt: Any = None,
                 progress: gr.Progress = gr.Progress()) -> list[Any]:
        progress(0.0, desc="Starting…")
        estimate = gradio_progress(progress)
        try:
            summary = run_build(session, src, name, up, n_rows, first, meth, k, steps, tgt, co, sp, cv,
                                progress=estimate, normalize=norm, prompt_format=fmt)
        except Cancelled:
            done = f" after {estimate.text}" if estimate.text else ""
            return [session, *vector_view(session),
                    note_html(f"Stopped{esc(done)}; the previous vector is kept.", "warn")]
        return [session, *vector_view(session), build_note(summary, bool(cv))]

    def arm(session: Session) -> str:
        """Runs at once on click (outside the queue), so Stop also works while the build waits in the queue."""
        session.cancel, session.build_pending = False, True
        return ""  # the build's own tracker fills this box: its place in the queue, then progress and time left

    def build_then_disarm(session: Session, *args: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:
        try:
            return build_ui(session, *args, progress=progress)
        finally:
            session.cancel, session.build_pending = False, False

    build.click(arm, inputs=state, outputs=status, queue=False, api_visibility="private").then(
        build_then_disarm, inputs=[state, source, dataset, upload, rows, offset, method, attr.k, attr.steps,
                                   attr.target, attr.content_only, attr.skip_punctuation, cross_validate, normalize,
                                   attr.prompt_format],
        outputs=[state, *vector_outputs, status], concurrency_id=MODEL_QUEUE, api_visibility="private",
        **one_status(status))

    def request_cancel(session: Session) -> str:
        if not request_stop(session):
            return note_html("No build is running.", "info")
        return note_html("Stopping after the current step…", "warn")

    cancel.click(request_cancel, inputs=state, outputs=status, queue=False, api_visibility="private")

    @guarded
    def load_ui(session: Session, path: str | None, allow: bool) -> list[Any]:
        for warning in load_vector_file(session, path, allow):
            warn(warning)
        return [session, *vector_view(session), note_html("Vector loaded.", "ok")]

    upload_vector.upload(load_ui, inputs=[state, upload_vector, allow_other],
                         outputs=[state, *vector_outputs, status],
                         concurrency_id=MODEL_QUEUE, api_visibility="private", **one_status(status))

    @guarded
    def suggested(session: Session) -> list[Any]:
        return slider_updates(session, session_model(session))

    reset.click(suggested, inputs=state, outputs=[layer, strength], api_visibility="private", queue=False)

    # API: /build_vector (source, dataset, file, rows, offset, method, k, steps, cross_validate) -> summary, vector file
    with gr.Column(visible=False):
        api_in = [gr.Textbox(value="dataset", label="source"), gr.Textbox(value="truthfulqa", label="dataset"),
                  gr.File(label="file", type="filepath"), gr.Number(value=12, label="rows"),
                  gr.Number(value=0, label="offset"), gr.Textbox(value="grains", label="method"),
                  gr.Number(value=5, label="k"), gr.Number(value=16, label="steps"),
                  gr.Checkbox(value=True, label="cross_validate"), gr.Checkbox(value=True, label="normalize"),
                  gr.Textbox(value="", label="prompt_format")]
        api_out = [gr.JSON(label="summary"), gr.File(label="vector")]

    def api_build(session: Session, source: str, dataset: str, file: str | None, rows: Any, offset: Any, method: str,
                  k: Any, steps: Any, cross_validate: bool, normalize: bool = True,
                  prompt_format: str = "") -> tuple[Session, dict, str]:
        """Build this session's steering vector from the current example (source="example") or a dataset
        (a shipped name, or an uploaded JSONL/CSV file with dataset="uploaded file" or empty); normalize is the
        keep-the-norm switch used while choosing the strength, prompt_format raw/qa/chat ("" = the model's)."""
        if source not in ("example", "dataset"):
            raise InputError("source must be 'example' or 'dataset'.")
        dataset_name = dataset if dataset else (UPLOAD if file else "truthfulqa")
        session.cancel, session.build_pending = False, True
        try:
            summary = run_build(session, source, dataset_name, file, rows, offset, method, k, steps, "sequence", True,
                                False, cross_validate, normalize=normalize is not False, prompt_format=prompt_format)
        except Cancelled as exc:
            raise InputError(f"{exc} The previous vector is kept.") from None
        finally:
            session.cancel, session.build_pending = False, False
        return session, summary, session.vector_path

    api_endpoint(api_build, [state, *api_in], [state, *api_out], "build_vector")

    with gr.Column(visible=False):
        api_stop_out = gr.JSON(label="stop")

    def api_stop_build(session: Session) -> dict:
        """Ask this session's running (or queued) vector build to stop after its current step; the previous
        vector is kept and every steering hook comes off. Returns {"stopping": true} when a build was running."""
        return {"stopping": request_stop(session)}

    api_endpoint(api_stop_build, [state], [api_stop_out], "stop_build", queue_id=None)

    with gr.Column(visible=False):
        api_vec_in = [gr.File(label="vector_file", type="filepath"),
                      gr.Checkbox(value=False, label="allow_other_model")]
        api_vec_out = gr.JSON(label="vector")

    def api_load_vector(session: Session, vector_file: str | None,
                        allow_other_model: bool = False) -> tuple[Session, dict]:
        """Load a .safetensors steering vector into this session (checked against the session's model; a vector
        built for another model is refused unless allow_other_model)."""
        warnings = load_vector_file(session, vector_file, bool(allow_other_model))
        return session, to_jsonable({**vector_info(session), "warnings": warnings})

    api_endpoint(api_load_vector, [state, *api_vec_in], [state, api_vec_out], "load_vector")

    with gr.Column(visible=False):
        api_info_out = gr.JSON(label="vector")

    def api_vector_info(session: Session) -> dict:
        """This session's current vector (null when there is none)."""
        return to_jsonable(vector_info(session))

    api_endpoint(api_vector_info, [state], [api_info_out], "vector_info", queue_id=None)
    panel.vector_changed = vector_outputs
    return panel


def request_stop(session: Session) -> bool:
    """Flag the session's pending build to stop (it polls the flag between steps); False when none is pending."""
    if not session.build_pending:
        return False
    session.cancel = True
    return True


def vector_info(session: Session) -> dict:
    v = session.vector
    if v is None:
        return {"vector": None}
    return {"label": session.vector_label, "model_id": v.model_id, "method": v.method, "k": v.k,
            "n_examples": v.n_examples, "layers": v.layers, "default_layer": v.default_layer,
            "default_strength": v.default_strength, "allow_other_model": session.allow_other_model,
            "meta": {k: val for k, val in (v.meta or {}).items() if k != "selection"},
            "cv": {k: val for k, val in ((v.meta or {}).get("selection") or {}).items() if k != "table"},
            "direction_warnings": v.warnings()}

