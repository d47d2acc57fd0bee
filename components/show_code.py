""""Show code": the Python API calls and the CLI commands that reproduce what the app currently shows.

Only string formatting: values are embedded with repr() (Python) and shlex.quote() (shell).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import gradio as gr

from components.app_state import Session

# the UI values the code is made from, in the order the refresh handler receives them
FIELDS = ["prompt", "chosen", "rejected", "image", "steps", "target", "baseline", "k", "content_only",
          "skip_punctuation", "layer", "strength", "normalize", "build_source", "build_dataset", "build_rows",
          "build_method", "build_select", "gen_prompt", "max_new_tokens", "do_sample", "temperature", "top_p", "seed",
          "eval_dataset", "eval_rows", "eval_offset", "prompt_format", "gen_prompt_format", "eval_prompt_format",
          "eval_length_normalize"]


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


def python_code(cfg: dict[str, Any], session: Session | None = None) -> str:
    """A runnable script reproducing the attribution, top-k, vector, side-by-side and evaluation views, with the
    exact prompt formats (prompt_format=...) and one `grains.Steering` value used by generation and evaluation."""
    model = session.model_name if session else "gemma-3-270m"
    inputs = (session.inputs if session else None) or {}
    attr_fmt = _format(cfg.get("prompt_format"), inputs.get("prompt_format"))
    gen_fmt = _format(cfg.get("gen_prompt_format"), ((session.last_generation if session else None) or {})
                      .get("prompt_format"))
    eval_fmt = _format(cfg.get("eval_prompt_format"), ((session.last_eval if session else None) or {})
                       .get("prompt_format"))
    normalize = bool(cfg.get("normalize", True))
    allow = bool(session and session.allow_other_model)
    steps, k = _int(cfg.get("steps"), 12), _int(cfg.get("k"), 5)
    layer, strength = _int(cfg.get("layer"), 0), _float(cfg.get("strength"), 0.5)
    content_only, skip_punct = bool(cfg.get("content_only", True)), bool(cfg.get("skip_punctuation", False))
    image = cfg.get("image")
    overrides = session.overrides if session else {}
    lines = [
        "import grains",
        "from grains.data import BUILTIN_DATASETS, load_any",
        "from grains.encoding import encode_example",
    ]
    if image:
        lines.append("from grains.images import load_image")
    lines += ["", f"lm = grains.load_model({model!r})", ""]
    image_arg = ", image=image" if image else ""
    if image:
        lines += ['image = load_image("photo.jpg")  # the image you uploaded', ""]
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
    build = session.last_build if session else None
    source = (build or {}).get("source") or cfg.get("build_source") or "dataset"
    method = (build or {}).get("method") or cfg.get("build_method") or "grains"
    select = bool((build or {}).get("select", cfg.get("build_select", True)))
    build_norm = bool((build or {}).get("normalize", normalize))
    build_fmt = _format((build or {}).get("prompt_format"), attr_fmt)
    build_extra = f", normalize={build_norm}{_fmt_arg(build_fmt)}"
    if session is not None and session.vector is not None and build is None:
        lines.append(f"# this session's vector: {session.vector_label}")
        lines.append('vector = grains.load_vector("my_vector.safetensors")  # the file from "Save vector"')
    elif source == "example":
        ov = ""
        if overrides and any(overrides.values()):
            ov = f", overrides={{'plus': {overrides}, 'minus': {overrides}}}"
        photo = ", image='photo.jpg'" if image else ""
        lines += [f"examples = [grains.PreferenceExample(prompt, chosen, rejected{photo})]",
                  f"built = grains.build_vector(lm, examples, method={method!r}, k={k}, steps={steps}, "
                  f"content_only={content_only}, skip_punctuation={skip_punct}{ov}{build_extra})",
                  "vector = built.vector", 'vector.save("my_vector.safetensors")']
    else:
        name = (build or {}).get("dataset") or cfg.get("build_dataset") or "truthfulqa"
        rows = _int((build or {}).get("rows", cfg.get("build_rows")), 12)
        offset = _int((build or {}).get("offset", 0), 0)
        lines += _dataset_lines(name, rows, offset)
        lines += ["examples = grains.truthfulqa_to_pairs(rows) if kind == \"truthfulqa\" else rows",
                  f"built = grains.build_vector(lm, examples, method={method!r}, k={k}, steps={steps}, "
                  f"content_only={content_only}, skip_punctuation={skip_punct}, select={select}{build_extra})",
                  "vector = built.vector",
                  'print(vector.default_layer, vector.default_strength, vector.meta.get("note"))',
                  'vector.save("my_vector.safetensors")']
    gen_prompt = cfg.get("gen_prompt") or ""
    settings = (f"max_new_tokens={_int(cfg.get('max_new_tokens'), 40)}, do_sample={bool(cfg.get('do_sample'))}, "
                f"temperature={_float(cfg.get('temperature'), 1.0):g}, top_p={_float(cfg.get('top_p'), 1.0):g}, "
                f"seed={_int(cfg.get('seed'), 0)}")
    lines += [
        "",
        "# 4. One checked steering setting, used by generation and evaluation alike "
        "(negative strength steers toward the rejected answers)",
        f"steering = grains.Steering.create(lm, vector, layers={layer}, strength={strength:g}, normalize={normalize}"
        + (", allow_other_model=True" if allow else "") + ")",
        "",
        "# 5. Unsteered and steered, side by side (one batch, paired sampling)",
        f"settings = grains.GenerationSettings({settings})",
        f"pair = grains.generate_pair(lm, {gen_prompt!r}, steering, settings=settings{image_arg}{_fmt_arg(gen_fmt)})",
        "print(repr(pair.prompt_text))  # the exact text the model saw",
        'print("unsteered:", pair.unsteered)',
        'print("steered:  ", pair.steered)',
        "",
        "# 6. Evaluation: accuracy before and after steering, exact McNemar p-value, bootstrap CI, side effects",
    ]
    lines += _dataset_lines(cfg.get("eval_dataset") or "truthfulqa", _int(cfg.get("eval_rows"), 20),
                            _int(cfg.get("eval_offset"), 24), "eval_rows")
    length = ", length_normalize=True" if cfg.get("eval_length_normalize") else ""
    lines += [f"report = grains.evaluate(lm, eval_rows, kind, steering{length}, side_effects=True"
              f"{_fmt_arg(eval_fmt)})",
              'print(report["reading"])',
              'print("side effects:", report["side_effects"]["reading"])']
    return "\n".join(lines) + "\n"


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
    gen_fmt = _format(cfg.get("gen_prompt_format"), ((session.last_generation if session else None) or {})
                      .get("prompt_format"))
    eval_fmt = _format(cfg.get("eval_prompt_format"), ((session.last_eval if session else None) or {})
                       .get("prompt_format"))
    norm = [] if cfg.get("normalize", True) else ["--no-normalize"]
    allow = ["--allow-other-model"] if session and session.allow_other_model else []
    model = q(session.model_name if session else "gemma-3-270m")
    steps, k = str(_int(cfg.get("steps"), 12)), str(_int(cfg.get("k"), 5))
    layer, strength = str(_int(cfg.get("layer"), 0)), f"{_float(cfg.get('strength'), 0.5):g}"
    image = ["--image", "photo.jpg"] if cfg.get("image") else []
    build = (session.last_build if session else None) or {}
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
    if source == "example":
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
    sample = (["--sample", "--temperature", f"{_float(cfg.get('temperature'), 1.0):g}", "--top-p",
               f"{_float(cfg.get('top_p'), 1.0):g}"] if cfg.get("do_sample") else [])
    eval_name = cfg.get("eval_dataset") or "truthfulqa"
    lines += [
        "",
        "# 4. side by side",
        command("python -m grains generate", "--model", model, "--prompt", q(cfg.get("gen_prompt") or ""), *image,
                "--vector", "my_vector.safetensors", "--layer", layer, "--strength", strength,
                "--max-new-tokens", str(_int(cfg.get("max_new_tokens"), 40)), "--seed", str(_int(cfg.get("seed"), 0)),
                *sample, *norm, *allow, *_fmt_flag(gen_fmt)),
        "",
        "# 5. evaluation",
        command("python -m grains eval", "--model", model, "--data",
                "my_data.jsonl" if eval_name == "uploaded file" else q(eval_name),
                "--limit", str(_int(cfg.get("eval_rows"), 20)), "--offset", str(_int(cfg.get("eval_offset"), 24)),
                "--vector", "my_vector.safetensors", "--layer", layer, "--strength", strength, *norm, *allow,
                *(["--length-normalize"] if cfg.get("eval_length_normalize") else []), *_fmt_flag(eval_fmt)),
    ]
    return "\n".join(lines) + "\n"


def build_show_code_panel(state: gr.State, sources: dict[str, Any]) -> tuple[gr.Code, gr.Code, Any]:
    """The Show code tab; `sources` maps FIELDS names to the components holding them. Returns (python, cli,
    refresh function with its inputs) so the app can refresh when the tab is opened."""
    gr.Markdown("The calls below reproduce what this session shows: same model, inputs and settings. Copy them "
                "into a script or a terminal.", elem_classes=["grains-muted"])
    refresh = gr.Button("Refresh from the current settings", size="sm")
    python = gr.Code(language="python", label="Python API", interactive=False, elem_id="grains-code-python")
    cli = gr.Code(language="shell", label="Command line", interactive=False, elem_id="grains-code-cli")
    names = [n for n in FIELDS if n in sources]
    inputs = [state, *[sources[n] for n in names]]

    def make(session: Session, *values: Any) -> tuple[str, str]:
        cfg = dict(zip(names, values))
        return python_code(cfg, session), cli_code(cfg, session)

    refresh.click(make, inputs=inputs, outputs=[python, cli], queue=False, api_visibility="private")
    return python, cli, (make, inputs)
