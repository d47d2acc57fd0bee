""""Show code": the Python API calls and the CLI commands that reproduce what the app currently shows.

The script runs from any folder with the package installed: shipped files by package paths, the session's vector and
photos from the script's folder (`HERE`, components.code_bundle); runs of a model no longer loaded are left out.

Faithful to the session: a vector that was loaded from a file (or the shipped default) is loaded from that file, not
rebuilt from the Build form; the side-by-side and evaluation calls use the settings of the last run on their tabs
(rows, offset, format, length normalisation, stop sequences) when there was one, else the forms' values; the
steering uses the session's layer, strength and keep-the-norm switch.
Only string formatting: values are embedded with repr() (Python) and shlex.quote() (shell).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import gradio as gr

from components.session import Session

# the UI values the code is made from, in the order the refresh handler receives them
FIELDS = ["hallucination_last", "prompt", "chosen", "rejected", "image", "steps", "target", "baseline", "k",
          "content_only", "skip_punctuation", "layer", "strength", "normalize", "build_source", "build_dataset",
          "build_rows", "build_method", "build_select", "gen_prompt", "max_new_tokens", "do_sample", "temperature",
          "top_p", "seed", "eval_dataset", "eval_rows", "eval_offset", "prompt_format", "gen_prompt_format",
          "eval_prompt_format", "eval_length_normalize"]


def _format(value: Any, fallback: Any = None) -> str | None:
    """A prompt format name from the UI (raw/qa/chat), else the fallback; None when neither is known."""
    for candidate in (value, fallback):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def _fmt_arg(fmt: str | None) -> str:
    return f", prompt_format={fmt!r}" if fmt else ""


def _fmt_flag(fmt: str | None) -> list[str]:
    return ["--prompt-format", shlex.quote(fmt)] if fmt else []


def _int(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _dataset_lines(name: str | None, limit: int, offset: int, var: str = "rows") -> list[str]:
    if not name or name == "uploaded file":
        return [f'kind, {var} = load_any("my_data.jsonl", limit={limit}, offset={offset})  # your uploaded file']
    return [f"kind, {var} = load_any(BUILTIN_DATASETS[{name!r}], limit={limit}, offset={offset})"]


def same_model(record: dict[str, Any] | None, session: Session | None) -> dict[str, Any] | None:
    """`record` (a last build, generation or evaluation) when it was made with the session's current model, else
    None: a script for the model loaded now never mixes in a run of an earlier one."""
    if not record or session is None:
        return None
    model = record.get("model")
    return record if model is None or model == session.model_name else None


def vector_file(session: Session | None) -> str | None:
    """The file name of the session's vector beside the script (the bundle saves it there), or None without one."""
    if session is None or session.vector is None:
        return None
    label = session.vector_label or ""
    name = label[len("loaded from "):].strip() if label.startswith("loaded from ") else ""
    name = Path(name or session.vector_path or "").name
    return name if name.endswith(".safetensors") else "session_vector.safetensors"


def built_here(build: dict[str, Any] | None, session: Session | None) -> bool:
    """Whether the session's vector is the one its last build made (not loaded or shipped since)."""
    label = (session.vector_label or "") if session else ""
    return bool(build and session and not label.startswith(("loaded from", "shipped default"))
                and build.get("file_name") == Path(session.vector_path or "").name)


def photo_file(path: Any, stem: str = "photo") -> str | None:
    """The name a photo gets beside the script ("photo.jpg"), or None without one."""
    return f"{stem}{Path(str(path)).suffix.lower() or '.png'}" if path else None


def eval_settings(cfg: dict[str, Any], session: Session | None) -> dict[str, Any]:
    """The Evaluate call's settings: those of the last evaluation run in this session, else the form's."""
    last = same_model(session.last_eval if session else None, session) or {}
    if last:
        return {"dataset": last.get("dataset") or "truthfulqa", "rows": _int(last.get("rows"), 20),
                "offset": _int(last.get("offset"), 0), "length_normalize": bool(last.get("length_normalize")),
                "prompt_format": _format(last.get("prompt_format"), cfg.get("eval_prompt_format")),
                "steered": bool(last.get("steered", True)), "layer": last.get("layer"),
                "strength": last.get("strength"), "normalize": last.get("normalize"), "from_run": True}
    return {"dataset": cfg.get("eval_dataset") or "truthfulqa", "rows": _int(cfg.get("eval_rows"), 20),
            "offset": _int(cfg.get("eval_offset"), 24), "length_normalize": bool(cfg.get("eval_length_normalize")),
            "prompt_format": _format(cfg.get("eval_prompt_format")), "steered": True, "layer": None,
            "strength": None, "normalize": None, "from_run": False}


def gen_settings(cfg: dict[str, Any], session: Session | None) -> dict[str, Any]:
    """The side-by-side call's settings: those of the last generation in this session, else the form's."""
    from grains.generation import QA_STOP

    last = same_model(session.last_generation if session else None, session) or {}
    return {"prompt": last.get("prompt", cfg.get("gen_prompt") or ""),
            "max_new_tokens": _int(last.get("max_new_tokens", cfg.get("max_new_tokens")), 40),
            "do_sample": bool(last.get("do_sample", cfg.get("do_sample"))),
            "temperature": _float(last.get("temperature", cfg.get("temperature")), 1.0),
            "top_p": _float(last.get("top_p", cfg.get("top_p")), 1.0),
            "seed": _int(last.get("seed", cfg.get("seed")), 0),
            "stop": list(last.get("stop", [QA_STOP])), "from_run": bool(last),
            "prompt_format": _format(last.get("prompt_format"), cfg.get("gen_prompt_format"))}


def python_code(cfg: dict[str, Any], session: Session | None = None) -> str:
    """A runnable script reproducing the attribution, top-k, vector, side-by-side and evaluation views, with the
    exact prompt formats (prompt_format=...) and one `grains.Steering` value used by generation and evaluation."""
    model = session.model_name if session else "gemma-3-270m"
    inputs = (session.inputs if session else None) or {}
    attr_fmt = _format(cfg.get("prompt_format"), inputs.get("prompt_format"))
    gen = gen_settings(cfg, session)
    gen_fmt = gen["prompt_format"]
    ev = eval_settings(cfg, session)
    eval_fmt = ev["prompt_format"]
    normalize = bool(cfg.get("normalize", True))
    allow = bool(session and session.allow_other_model)
    steps, k = _int(cfg.get("steps"), 12), _int(cfg.get("k"), 5)
    layer, strength = _int(cfg.get("layer"), 0), _float(cfg.get("strength"), 0.5)
    content_only, skip_punct = bool(cfg.get("content_only", True)), bool(cfg.get("skip_punctuation", False))
    image = cfg.get("image")
    overrides = session.overrides if session else {}
    lines = [
        "from pathlib import Path",
        "",
        "import grains",
        "from grains.compare_attributions import attribution_difference",
        "from grains.data import BUILTIN_DATASETS, load_any",
        "from grains.encoding import encode_example",
    ]
    if image:
        lines.append("from grains.images import load_image")
    lines += ["", "HERE = Path(__file__).resolve().parent  # the session's vector and photos are saved here",
              f"lm = grains.load_model({model!r})", ""]
    image_arg = ", image=image" if image else ""
    if image:
        lines += [f"image = load_image(HERE / {photo_file(image)!r})  # the photo of this session", ""]
    lines += [
        "# 1. Contrastive IG: f = log P(chosen | prompt) - log P(rejected | prompt)",
        f"prompt = {cfg.get('prompt') or ''!r}",
        f"chosen = {cfg.get('chosen') or ''!r}",
        f"rejected = {cfg.get('rejected') or ''!r}",
        f"result = grains.attribute(lm, prompt, chosen, rejected{image_arg}, steps={steps}, "
        f"target={cfg.get('target') or 'sequence'!r}, baseline={cfg.get('baseline') or 'zero'!r}{_fmt_arg(attr_fmt)})",
        "print(repr(result.prompt_text))  # the exact text the model saw",
        'print(f"f = {result.f_input:+.3f}, delta = {result.delta:+.4f}, converged = {result.converged}")',
        "",
        "# 2. Top-k over the prompt tokens",
        f"example = encode_example({f'lm.with_format({attr_fmt!r})' if attr_fmt else 'lm'}, prompt, chosen, "
        f"rejected{image_arg})",
        f"eligible = example.eligible_mask(\"plus\", content_only={content_only}, "
        f"skip_punctuation={skip_punct})[: len(result.tokens)]",
    ]
    force = ""
    if overrides and any(overrides.values()):
        force = (f", force_positive={overrides['force_positive']}, force_negative={overrides['force_negative']}, "
                 f"drop={overrides['drop']}")
    lines += [f"selection = grains.select_top_k(result.scores, k={k}, eligible=eligible{force}, strict=False)",
              "print([result.tokens[i] for i in selection.positive], [result.tokens[i] for i in selection.negative])",
              "", "# 3. Steering vector"]
    build = same_model(session.last_build if session else None, session)
    source = (build or {}).get("source") or cfg.get("build_source") or "dataset"
    method = (build or {}).get("method") or cfg.get("build_method") or "grains"
    select = bool((build or {}).get("select", cfg.get("build_select", True)))
    build_norm = bool((build or {}).get("normalize", normalize))
    build_fmt = _format((build or {}).get("prompt_format"), attr_fmt)
    build_extra = f", normalize={build_norm}{_fmt_arg(build_fmt)}"
    build_lines: list[str] = []
    if source == "example":
        ov = ""
        if overrides and any(overrides.values()):
            ov = f", overrides={{'plus': {overrides}, 'minus': {overrides}}}"
        photo = ", image=str(HERE / " + repr(photo_file(image)) + ")" if image else ""
        build_lines += [f"examples = [grains.PreferenceExample(prompt, chosen, rejected{photo})]",
                        f"built = grains.build_vector(lm, examples, method={method!r}, k={k}, steps={steps}, "
                        f"content_only={content_only}, skip_punctuation={skip_punct}{ov}{build_extra})"]
    else:
        name = (build or {}).get("dataset") or cfg.get("build_dataset") or "truthfulqa"
        rows = _int((build or {}).get("rows", cfg.get("build_rows")), 12)
        offset = _int((build or {}).get("offset", 0), 0)
        build_lines += _dataset_lines(name, rows, offset)
        build_lines += ["examples = grains.truthfulqa_to_pairs(rows) if kind == \"truthfulqa\" else rows",
                        f"built = grains.build_vector(lm, examples, method={method!r}, k={k}, steps={steps}, "
                        f"content_only={content_only}, skip_punctuation={skip_punct}, select={select}{build_extra})",
                        "print(built.vector.default_layer, built.vector.default_strength, "
                        'built.vector.meta.get("note"))']
    saved = vector_file(session)
    if saved is not None:
        lines.append(f"# this session's vector ({session.vector_label}), saved beside this script")
        if built_here(build, session):
            lines += ["REBUILD = False  # True: build it again as this session did (minutes on a CPU)",
                      "if REBUILD:", *(f"    {line}" for line in build_lines), "    vector = built.vector", "else:"]
        lines.append(f"{'    ' if built_here(build, session) else ''}vector = grains.load_vector(HERE / {saved!r})")
    else:
        lines += [*build_lines, "vector = built.vector", 'vector.save(HERE / "my_vector.safetensors")']
    gen_prompt = gen["prompt"]
    settings = (f"max_new_tokens={gen['max_new_tokens']}, do_sample={gen['do_sample']}, "
                f"temperature={gen['temperature']:g}, top_p={gen['top_p']:g}, seed={gen['seed']}"
                + (f", stop={tuple(gen['stop'])!r}" if gen["stop"] else ""))
    lines += [
        "",
        "# 4. One checked steering setting, used by generation and evaluation alike "
        "(negative strength steers toward the rejected answers)",
        f"steering = grains.Steering.create(lm, vector, layers={layer}, strength={strength:g}, normalize={normalize}"
        + (", allow_other_model=True" if allow else "") + ")",
        "",
        "# 4b. The same example attributed with the vector on (the Attribute tab's \"Attribute with the vector on\")",
        f"steered_result = grains.attribute(lm, prompt, chosen, rejected{image_arg}, steps={steps}, "
        f"target={cfg.get('target') or 'sequence'!r}, baseline={cfg.get('baseline') or 'zero'!r}{_fmt_arg(attr_fmt)}, "
        "steering=steering)",
        "difference = attribution_difference(result, steered_result)",
        'print(f"with the vector on, f moved by {difference.margin_change:+.3f} nats")',
        "",
        "# 5. Unsteered and steered, side by side (one batch, paired sampling"
        + ("; as last run on the Compare tab)" if gen["from_run"] else ")"),
        f"settings = grains.GenerationSettings({settings})",
        f"pair = grains.generate_pair(lm, {gen_prompt!r}, steering, settings=settings{image_arg}{_fmt_arg(gen_fmt)})",
        "print(repr(pair.prompt_text))  # the exact text the model saw",
        'print("unsteered:", pair.unsteered)',
        'print("steered:  ", pair.steered)',
        "",
        "# 6. Evaluation: accuracy before and after steering, exact McNemar p-value and the interval that inverts it, "
        "side effects" + (" (as last run on the Evaluate tab)" if ev["from_run"] else ""),
    ]
    lines += _dataset_lines(ev["dataset"], ev["rows"], ev["offset"], "eval_rows")
    length = ", length_normalize=True" if ev["length_normalize"] else ""
    eval_steering = "steering"
    if not ev["steered"]:
        eval_steering = "None"
    elif ev["layer"] is not None and (_int(ev["layer"], layer) != layer or _float(ev["strength"], strength) != strength
                                      or bool(ev["normalize"]) != normalize):
        lines.append(f"eval_steering = grains.Steering.create(lm, vector, layers={_int(ev['layer'], layer)}, "
                     f"strength={_float(ev['strength'], strength):g}, normalize={bool(ev['normalize'])}"
                     + (", allow_other_model=True" if allow else "") + ")  # the setting that evaluation used")
        eval_steering = "eval_steering"
    side = ", side_effects=True" if ev["steered"] else ""
    lines += [f"report = grains.evaluate(lm, eval_rows, kind, {eval_steering}{length}, per_item=True, "
              f"first_row={ev['offset']}{side}{_fmt_arg(eval_fmt)})",
              'report.show()  # the metric table, the McNemar reading and interval, the side effects']
    if ev["steered"]:
        lines.append('print("side effects:", report.side_effects["reading"])')
    lines += check_lines(cfg.get("hallucination_last"), session)
    return "\n".join(lines) + "\n"


def check_lines(last: dict[str, Any] | None, session: Session | None) -> list[str]:
    """The hallucination check of the last photo checked with this model (VLMs), or nothing."""
    inputs = (last or {}).get("inputs") or {}
    if not inputs or session is None or inputs.get("model") != session.model_name:
        return []
    args = [f"present={inputs.get('present') or ''!r}"]
    if inputs.get("absent"):
        args.append(f"absent={inputs['absent']!r}")
    if inputs.get("setting"):
        args.append(f"setting={inputs['setting']!r}")
    if inputs.get("n_absent"):
        args.append(f"n_absent={int(inputs['n_absent'])}")
    return ["", "# 7. Hallucination check of the photo (POPE style), as last run on the Hallucination check tab",
            "from grains.vlm.check import check_image", "",
            f"check = check_image(lm, HERE / {photo_file(inputs.get('image'), 'check_photo')!r}, {', '.join(args)})",
            "print(check)"]


def command(*parts: str) -> str:
    """One shell command, an option (and its value) per continued line."""
    head: list[str] = []
    options: list[str] = []
    for part in parts:
        if part.startswith("--"):
            options.append(part)
        elif options:
            options[-1] += " " + part
        else:
            head.append(part)
    return " \\\n    ".join([" ".join(head), *options])


def cli_code(cfg: dict[str, Any], session: Session | None = None) -> str:
    """The same steps with `python -m grains` (with --prompt-format, --no-normalize and --allow-other-model as set)."""
    q = shlex.quote
    inputs = (session.inputs if session else None) or {}
    attr_fmt = _format(cfg.get("prompt_format"), inputs.get("prompt_format"))
    gen = gen_settings(cfg, session)
    gen_fmt = gen["prompt_format"]
    ev = eval_settings(cfg, session)
    eval_fmt = ev["prompt_format"]
    norm = [] if cfg.get("normalize", True) else ["--no-normalize"]
    allow = ["--allow-other-model"] if session and session.allow_other_model else []
    model = q(session.model_name if session else "gemma-3-270m")
    steps, k = str(_int(cfg.get("steps"), 12)), str(_int(cfg.get("k"), 5))
    layer, strength = str(_int(cfg.get("layer"), 0)), f"{_float(cfg.get('strength'), 0.5):g}"
    image = ["--image", photo_file(cfg.get("image"))] if cfg.get("image") else []
    build = same_model(session.last_build if session else None, session) or {}
    source = build.get("source") or cfg.get("build_source") or "dataset"
    tokens = [] if cfg.get("content_only", True) else ["--all-tokens"]
    method = q(build.get("method") or cfg.get("build_method") or "grains")
    lines = [
        "# 1. attribution",
        command("python -m grains attribute", "--model", model, "--prompt", q(cfg.get("prompt") or ""),
                "--chosen", q(cfg.get("chosen") or ""), "--rejected", q(cfg.get("rejected") or ""), *image,
                "--steps", steps, "--target", q(cfg.get("target") or "sequence"),
                "--baseline", q(cfg.get("baseline") or "zero"), *_fmt_flag(attr_fmt)),
        "",
        "# 2-3. top-k and the steering vector",
    ]
    build_fmt = _format(build.get("prompt_format"), attr_fmt)
    build_norm = [] if build.get("normalize", cfg.get("normalize", True)) else ["--no-normalize"]
    loaded = vector_file(session)
    vector_path = q(loaded) if loaded is not None else "my_vector.safetensors"
    if loaded is not None:
        lines += [f"# this session's vector ({session.vector_label}) is {vector_path}, saved in the download bundle: "
                  "run these commands in its folder"]
    elif source == "example":
        row = {"prompt": cfg.get("prompt") or "", "chosen": cfg.get("chosen") or "",
               "rejected": cfg.get("rejected") or ""}
        lines += [f"printf '%s\\n' {q(json.dumps(row, ensure_ascii=False))} > example.jsonl",
                  command("python -m grains build", "--model", model, "--data", "example.jsonl", "--top-k", k,
                          "--steps", steps, "--method", method, *tokens, "--no-select", *build_norm,
                          *_fmt_flag(build_fmt), "--out", "my_vector.safetensors")]
    else:
        name = build.get("dataset") or cfg.get("build_dataset") or "truthfulqa"
        select = [] if build.get("select", cfg.get("build_select", True)) else ["--no-select"]
        lines.append(command("python -m grains build", "--model", model, "--data",
                             "my_data.jsonl" if name == "uploaded file" else q(name),
                             "--limit", str(_int(build.get("rows", cfg.get("build_rows")), 12)),
                             "--offset", str(_int(build.get("offset"), 0)), "--top-k", k, "--steps", steps,
                             "--method", method, *tokens, *select, *build_norm, *_fmt_flag(build_fmt), "--out",
                             "my_vector.safetensors"))
    sample = (["--sample", "--temperature", f"{gen['temperature']:g}", "--top-p", f"{gen['top_p']:g}"]
              if gen["do_sample"] else [])
    stops = [part for x in gen["stop"] for part in ("--stop", q(x.replace("\n", "\\n")))]
    eval_name = ev["dataset"]
    eval_vector = ["--vector", vector_path, "--layer", layer, "--strength", strength, *norm, *allow]
    if not ev["steered"]:
        eval_vector = []
    elif ev["layer"] is not None:
        eval_vector = ["--vector", vector_path, "--layer", str(_int(ev["layer"], int(layer))), "--strength",
                       f"{_float(ev['strength'], float(strength)):g}",
                       *([] if ev["normalize"] in (None, True) else ["--no-normalize"]), *allow]
    lines += [
        "",
        "# 4. side by side",
        command("python -m grains generate", "--model", model, "--prompt", q(gen["prompt"]), *image,
                "--vector", vector_path, "--layer", layer, "--strength", strength,
                "--max-new-tokens", str(gen["max_new_tokens"]), "--seed", str(gen["seed"]),
                *sample, *stops, *norm, *allow, *_fmt_flag(gen_fmt)),
        "",
        "# 5. evaluation",
        command("python -m grains eval", "--model", model, "--data",
                "my_data.jsonl" if eval_name == "uploaded file" else q(eval_name),
                "--limit", str(ev["rows"]), "--offset", str(ev["offset"]), *eval_vector, "--per-item",
                *(["--length-normalize"] if ev["length_normalize"] else []), *_fmt_flag(eval_fmt)),
    ]
    return "\n".join(lines) + "\n"


def build_show_code_panel(state: gr.State, sources: dict[str, Any]) -> tuple[gr.Code, gr.Code, Any]:
    """The Show code tab; `sources` maps FIELDS names to the components holding them. Returns (python, cli,
    refresh function with its inputs) so the app can refresh when the tab is opened."""
    from components.code_bundle import connect_download

    gr.Markdown("The calls below reproduce what this session shows: same model, inputs and settings. Download the "
                "script with the session's vector and photos beside it: it runs from any folder where the grains "
                "package is installed.", elem_classes=["grains-muted"])
    refresh = gr.Button("Refresh from the current settings", size="sm")
    python = gr.Code(language="python", label="Python API", interactive=False, elem_id="grains-code-python")
    cli = gr.Code(language="shell", label="Command line", interactive=False, elem_id="grains-code-cli")
    names = [n for n in FIELDS if n in sources]
    inputs = [state, *[sources[n] for n in names]]

    def make(session: Session, *values: Any) -> tuple[str, str]:
        cfg = dict(zip(names, values))
        return python_code(cfg, session), cli_code(cfg, session)

    refresh.click(make, inputs=inputs, outputs=[python, cli], queue=False, api_visibility="private")
    connect_download(python, inputs, names)
    return python, cli, (make, inputs)
