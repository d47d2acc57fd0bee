"""GrAInS Studio: a Gradio app for contrastive Integrated-Gradients attribution and activation steering.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--model gemma-3-270m]
    python app.py --classroom --auth-file class.txt --share     # a class on one server (README: "A classroom")

The app only composes panels from `components/`; every computation is a call into `grains`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import gradio as gr

from components.attribution_panel import build_attribution_panel
from components.common import esc, guarded, note_html
from components.compare_panel import build_compare_panel
from components.evaluate_panel import build_evaluate_panel
from components.explainer import build_explainer
from components.hallucination_panel import build_hallucination_panel
from components.initial_values import bake_initial_values
from components.model_cache import MODELS, session_model
from components.model_panel import build_model_panel
from components.recipes import build_recipe_panel
from components.scheduling import ServerLimits, cancel_waiting, configure_lanes
from components.session import MAX_UPLOAD, new_session, user_message
from components.session_store import STORE, connect_restore, remember_all
from components.show_code import build_show_code_panel
from components.steering_panel import build_steering_panel
from grains import __version__
from grains.matmul_precision import set_strict_fp32
from grains.presets import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent
APP_CSS = ROOT / "assets" / "app.css"  # layout, cards, notes, tables (was inline here)
STYLE_CSS = ROOT / "assets" / "style.css"
log = logging.getLogger("grains.app")


def header_html(default_model: str) -> str:
    return (f'<div id="grains-header"><h1>GrAInS Studio</h1><span class="grains-sub">Which input tokens make a model '
            f'prefer one answer over another, and steering vectors built from them · v{esc(__version__)}</span></div>')


def build_app(default_model: str = DEFAULT_MODEL, preload: bool = True,
              limits: ServerLimits | None = None) -> gr.Blocks:
    """The whole app. With `preload`, the default model is loaded now, so the first request is fast; `limits` are the
    server's lanes and per-user limits (components.scheduling; default: one person's)."""
    preload_error = ""
    if preload:
        try:
            MODELS.get(default_model)
        except Exception as exc:  # noqa: BLE001 - the app still starts; the model bar says why
            log.warning("could not preload %s: %s", default_model, exc)
            preload_error = str(exc)
    initial = new_session(default_model)

    with gr.Blocks(title="GrAInS Studio", analytics_enabled=False) as demo:
        state = gr.State(initial)
        gr.HTML(header_html(default_model))
        with gr.Row(elem_id="grains-queue-bar"):
            cancel_waiting_button = gr.Button("Cancel my waiting jobs", size="sm", variant="secondary", scale=0,
                                              min_width=200, elem_id="grains-cancel-waiting")
            cancel_note = gr.HTML(elem_id="grains-cancel-note")
        if preload_error:
            gr.HTML(note_html(f"The default model could not be loaded: {esc(preload_error)}", "error"))
        recipes = build_recipe_panel(initial, default_model)
        model = build_model_panel(state, default_model)
        with gr.Tabs(elem_id="grains-tabs"):
            with gr.Tab("1 · Attribute", id="attribute", elem_id="grains-tab-attribute"):
                attr = build_attribution_panel(state)
            with gr.Tab("2 · Steer", id="steer", elem_id="grains-tab-steer"):
                steer = build_steering_panel(state, attr)
            with gr.Tab("3 · Compare", id="compare", elem_id="grains-tab-compare"):
                compare = build_compare_panel(state, attr, steer)
            with gr.Tab("4 · Evaluate", id="evaluate", elem_id="grains-tab-evaluate"):
                evaluate = build_evaluate_panel(state, steer)
            with gr.Tab("5 · Hallucination check", id="hallucination", elem_id="grains-tab-hallucination"):
                halluc = build_hallucination_panel(state)
            with gr.Tab("Show code", id="code", elem_id="grains-tab-code") as code_tab:
                sources = {
                    "prompt": attr.prompt, "chosen": attr.chosen, "rejected": attr.rejected, "image": attr.image,
                    "steps": attr.steps, "target": attr.target, "baseline": attr.baseline, "k": attr.k,
                    "content_only": attr.content_only, "skip_punctuation": attr.skip_punctuation,
                    "layer": steer.layer, "strength": steer.strength, "normalize": steer.normalize,
                    "build_source": steer.source, "build_dataset": steer.dataset, "build_rows": steer.rows,
                    "build_method": steer.method, "build_select": steer.cross_validate, "gen_prompt": compare.prompt,
                    "max_new_tokens": compare.max_new_tokens, "eval_dataset": evaluate.dataset,
                    "eval_offset": evaluate.offset,
                    "prompt_format": attr.prompt_format, "gen_prompt_format": compare.prompt_format,
                    "eval_prompt_format": evaluate.prompt_format, "eval_rows": evaluate.rows,
                    "eval_length_normalize": evaluate.length_normalize, "hallucination_last": halluc.last,
                }
                python, cli, (make_code, code_inputs) = build_show_code_panel(state, sources)
            with gr.Tab("How GrAInS works", id="explainer", elem_id="grains-tab-explainer"):
                build_explainer()

        panels = [model, attr, steer, compare, evaluate, halluc]
        outputs = [c for p in panels for c in p.refresh_outputs]

        @guarded
        def refresh_all(session: Any) -> list[Any]:
            lm = session_model(session)
            return [u for p in panels for u in p.refresh(session, lm)]

        if preload and not preload_error:
            # the page opens already filled in for the initial session (no load round trip, no change events)
            bake_initial_values(outputs, refresh_all(initial))
            demo.load(guarded(model.current_card), inputs=state, outputs=model.card, queue=False,
                      api_visibility="private")
        else:
            demo.load(refresh_all, inputs=state, outputs=outputs, api_visibility="private")
        model.load_event.success(refresh_all, inputs=state, outputs=outputs, api_visibility="private")
        code_tab.select(make_code, inputs=code_inputs, outputs=[python, cli], api_visibility="private", queue=False)
        recipes.connect(state, {
            "prompt": attr.prompt, "chosen": attr.chosen, "rejected": attr.rejected, "image": attr.image,
            "compare_prompt": compare.prompt, "compare_image": compare.image, "browse_dataset": attr.dataset,
            "build_source": steer.source, "build_dataset": steer.dataset, "build_rows": steer.rows,
            "eval_dataset": evaluate.dataset, "eval_offset": evaluate.offset,
        }, refresh_all, outputs)
        attr.connect_steering(state, steer.layer, steer.strength, steer.normalize)
        connect_restore(demo, state, refresh_all, outputs, remember_all(demo, state))

        async def cancel_mine(request: gr.Request) -> str:
            count = await cancel_waiting(demo, request.session_hash)
            return note_html(f"Cancelled {count} waiting job{'s' if count != 1 else ''}." if count else
                             "You have no job waiting (a running job stops with its own Stop button).", "info")

        cancel_waiting_button.click(cancel_mine, outputs=cancel_note, queue=False, api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    configure_lanes(demo, limits)
    calm_idle_queue(demo)
    return demo


QUEUE_POLL_SECONDS = 0.05
QUEUE_SIZE = 256  # jobs waiting in all lanes together (a class of 30 with 3 waiting each fits)


def calm_idle_queue(demo: gr.Blocks, seconds: float = QUEUE_POLL_SECONDS) -> None:
    """Let the queue's two loops wake every `seconds`: Gradio's 1 ms (looking for work) and 10 ms (progress).

    Both loops poll with `asyncio.sleep`, even when nothing is queued: an idle app used about a tenth of a CPU core
    forever (93 ticks of 1000 in 10 s, measured; 13 at 50 ms), taken from the model when it runs. At 50 ms a queued
    job starts at most 50 ms later and progress bars update 20 times a second.

    Args:
        demo: the app, after `demo.queue(...)`.
        seconds: the poll interval (never below Gradio's own).
    """
    queue = getattr(demo, "_queue", None)  # private, so guarded: a Gradio without it keeps its own intervals
    for name in ("sleep_when_free", "progress_update_sleep_when_free"):
        if hasattr(queue, name):
            setattr(queue, name, max(float(getattr(queue, name)), seconds))


def style_options() -> dict[str, Any]:
    """Theme and CSS files, assets/app.css then assets/style.css (Gradio 6 takes them at launch)."""
    css_paths = [path for path in (APP_CSS, STYLE_CSS) if path.is_file()]
    theme = gr.themes.Default(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate",
                           font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                           font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])
    return {"theme": theme, "css_paths": css_paths}


def launch_app(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Launch with the app's style and upload limit; extra kwargs go to `Blocks.launch`."""
    options = {"max_file_size": MAX_UPLOAD, "show_error": True, **style_options(), **kwargs}
    return demo.launch(**options)


def read_auth(pairs: list[str], auth_file: str | None) -> list[tuple[str, str]]:
    """Users from `--auth user:password` values and an `--auth-file` (one user:password a line, # comments).

    Args:
        pairs: the --auth values.
        auth_file: the file's path, or None.

    Returns:
        (user, password) pairs; a malformed entry raises ValueError with one line saying which.
    """
    entries = [(f"--auth {i + 1}", p) for i, p in enumerate(pairs or [])]
    if auth_file:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --auth-file {auth_file}: {exc.__class__.__name__}") from None
        entries += [(f"{auth_file} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)
                    if line.strip() and not line.strip().startswith("#")]
    users = []
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password.strip():
            raise ValueError(f"{where}: expected user:password")
        users.append((user.strip(), password.strip()))
    return users


def limits_from(args: argparse.Namespace) -> ServerLimits:
    """The server's limits: classroom defaults with --classroom, else one person's; each flag overrides."""
    base = ServerLimits.classroom() if args.classroom else ServerLimits()

    def given(value: Any, default: Any) -> Any:
        if value is None:
            return default
        return None if value == 0 else value  # 0 turns a limit off

    def seconds(value: float | None, default: float) -> float:
        return default if value is None else value  # 0 is a setting here (never / first come, first served)

    return ServerLimits(short_slots=args.short_slots or base.short_slots, long_slots=args.long_slots or base.long_slots,
                        max_rows=given(args.max_rows, base.max_rows),
                        job_seconds=given(args.job_time_limit, base.job_seconds),
                        queued_per_user=given(args.queued_per_user, base.queued_per_user),
                        long_per_user=given(args.long_jobs_per_user, base.long_per_user),
                        long_yield_seconds=seconds(args.long_yield_seconds, base.long_yield_seconds),
                        overtake_seconds=seconds(args.overtake_seconds, base.overtake_seconds))


def warm_up(model_name: str) -> None:
    """The first screen's answers into the server's memory (components.warm_up); a failure is one line, and the
    server starts anyway."""
    from components.warm_up import warm_first_screen

    try:
        warm_first_screen(model_name, log=lambda line: print(line, file=sys.stderr))
    except Exception as exc:  # noqa: BLE001 - the server is still useful without the warm answers
        print(f"warm-up skipped: {user_message(exc)}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GrAInS Studio")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all; default local)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (use with --auth)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model loaded at start (preset, hub id or path)")
    parser.add_argument("--strict-fp32", action="store_true",
                        help="keep every fp32 product strict (default: oneDNN's faster route where a check on each "
                             "model shows it gives the same numbers)")
    room = parser.add_argument_group("a shared server (README: A classroom on one server)")
    room.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                      help="require a login (repeat for more users); Gradio's own authentication")
    room.add_argument("--auth-file", metavar="PATH", help="a file of logins, one user:password a line")
    room.add_argument("--classroom", action="store_true",
                      help="classroom defaults: --max-rows 32 --job-time-limit 600 --queued-per-user 3 "
                           "--long-jobs-per-user 1")
    room.add_argument("--max-rows", type=int, help="most rows per build or evaluation (0: the app's own cap, 500)")
    room.add_argument("--job-time-limit", type=float, metavar="SECONDS",
                      help="stop a job after this many seconds (0: no limit)")
    room.add_argument("--queued-per-user", type=int, help="most jobs one user may have waiting (0: no limit)")
    room.add_argument("--long-jobs-per-user", type=int,
                      help="most long jobs (build, evaluate, sweep, image check) per user, waiting or running "
                           "(0: no limit)")
    room.add_argument("--short-slots", type=int, help="short jobs (attribute, generate) run at once (default 1)")
    room.add_argument("--long-slots", type=int, help="long jobs run at once (default 1)")
    room.add_argument("--long-yield-seconds", type=float, metavar="SECONDS",
                      help="while a short job runs, a long job pauses up to this long before each forward pass, so "
                           "the short job has the CPU (default 2; 0: never)")
    room.add_argument("--overtake-seconds", type=float, metavar="SECONDS",
                      help="a job joining a lane goes ahead of waiting jobs expected to take longer, unless they have "
                           "waited this long (default 30; 0: first come, first served)")
    room.add_argument("--warm-up", action=argparse.BooleanOptionalAction, default=None,
                      help="compute the first screen's attribution and generation before serving, so a class "
                           "pressing the first buttons reads them from memory (default: on with --classroom)")
    room.add_argument("--session-hours", type=float, default=12.0,
                      help="how long a browser's session is kept for a reload (default 12)")
    room.add_argument("--max-sessions", type=int, default=300, help="most browser sessions kept (default 300)")
    args = parser.parse_args(argv)
    for name in ("max_rows", "job_time_limit", "queued_per_user", "long_jobs_per_user", "short_slots",
                 "long_slots", "max_sessions", "long_yield_seconds", "overtake_seconds"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    try:
        args.users = read_auth(args.auth, args.auth_file)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.share and not args.users:
        print("Warning: --share without --auth: anyone with the link can use this server and its CPU "
              "(add --auth USER:PASSWORD or --auth-file).", file=sys.stderr)
    if args.strict_fp32:
        set_strict_fp32()
    STORE.max_sessions, STORE.seconds = max(1, args.max_sessions), args.session_hours * 3600
    demo = build_app(args.model, limits=limits_from(args))
    if args.classroom if args.warm_up is None else args.warm_up:
        warm_up(args.model)
    launch_app(demo, server_name=args.host, server_port=args.port, share=args.share, auth=args.users or None)


if __name__ == "__main__":
    main()
