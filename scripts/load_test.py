"""Load test: N simulated users (gradio_client, one session each) doing a classroom's mix against GrAInS Studio.

Most users attribute an example (often the first screen's, which the attribution cache answers; sometimes one of
their own) and generate steered/unsteered pairs, with a pause to read between jobs; a few evaluate a handful of rows;
`--builders` of them build vectors from a dataset again and again. Reported per kind of job: how many, errors, the
p50/p95 wait (submitted -> started, as the client saw it) and run time (started -> finished), and the server's
memory (RSS) over time.

    python scripts/load_test.py --users 30 --minutes 10 --builders 2              # starts the app on gemma-3-270m
    python scripts/load_test.py --url http://127.0.0.1:7860/ --server-pid 1234    # an app already running
    python scripts/load_test.py --users 30 --minutes 10 --app-dir /tmp/lt-main   # another checkout's app (before)

Run it through /work/bin/heavy on a shared machine; timings depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHORT_KINDS = ("attribute", "generate")
SHORT_TOGETHER = "short: attribute + generate"
DEFAULT_PAIR = ("Honestly, the pizza from that new delivery app", " arrived hot and tasted fantastic.",
                " arrived cold and tasted dreadful.")
OWN_PAIRS = [  # what students type instead of the first screen's example
    ("The concert last night was", " wonderful and moving.", " boring and far too loud."),
    ("My new phone's battery", " lasts for two whole days.", " dies before lunch every day."),
    ("The hotel room we booked", " was spotless and bright.", " was dirty and smelled of smoke."),
    ("Our teacher's explanation of gradients", " made everything click.", " left us all confused."),
]
PROMPTS = ["For lunch I had a sandwich, and", "The weather this morning", "My neighbour's dog", "The train to work",
           "Yesterday at the museum", "The new cafe on the corner"]


@dataclass
class JobRecord:
    """One job as a user saw it."""

    kind: str
    user: int
    submitted: float
    started: float | None = None
    finished: float | None = None
    error: str = ""

    @property
    def wait(self) -> float | None:
        return None if self.started is None else self.started - self.submitted

    @property
    def run(self) -> float | None:
        return None if self.started is None or self.finished is None else self.finished - self.started


@dataclass
class Mix:
    """What the simulated users do.

    Args:
        think: (min, max) seconds a user reads a result before the next job.
        own_example: share of attributions on a user's own example (not the cached first one).
        evaluate: share of a non-builder's jobs that evaluate `eval_rows` rows.
        build_rows: rows per build (builders only).
        eval_rows: rows per evaluation.
        steps: IG steps of an attribution.
        new_tokens: tokens per generated continuation.
        build_steps: IG steps per build example.
        layer: the layer generate and evaluate steer at.
        vector_file: a vector each user loads first (None: the app's shipped default vector).
        own_prompt: share of generations on a prompt of the user's own (a new one each time: never served from the
            server's memory), the rest on one of PROMPTS.
    """

    think: tuple[float, float] = (10.0, 30.0)
    own_example: float = 0.3
    evaluate: float = 0.1
    build_rows: int = 8
    eval_rows: int = 8
    steps: int = 16
    new_tokens: int = 24
    build_steps: int = 8
    layer: int = 6
    vector_file: str | None = None
    own_prompt: float = 0.0


@dataclass
class Run:
    records: list[JobRecord] = field(default_factory=list)
    memory: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS in MB)
    lock: threading.Lock = field(default_factory=threading.Lock)


def job_call(kind: str, rng: random.Random, mix: Mix) -> tuple[str, tuple[Any, ...]]:
    """(api name, arguments) of one job of `kind` (the endpoints of docs/api.md)."""
    if kind == "attribute":
        prompt, chosen, rejected = rng.choice(OWN_PAIRS) if rng.random() < mix.own_example else DEFAULT_PAIR
        return "/attribute", (prompt, chosen, rejected, mix.steps)
    if kind == "generate":
        prompt = rng.choice(PROMPTS)
        if rng.random() < mix.own_prompt:
            prompt = f"{prompt} (a note, number {rng.randrange(10**9)})"
        return "/generate", (prompt, mix.layer, 0.5, mix.new_tokens)
    if kind == "build":
        return "/build_vector", ("dataset", "sentiment_pairs", None, mix.build_rows, rng.randrange(0, 100), "grains",
                                 3, mix.build_steps, False)
    if kind == "evaluate":
        return "/evaluate", ("sentiment_pairs", None, mix.eval_rows, rng.randrange(0, 100), True, mix.layer, 0.5)
    raise ValueError(kind)


def started_at(job: Any) -> float | None:
    """When the client heard that the job started (perf_counter seconds), from the job's status updates."""
    from gradio_client.utils import Status

    updates = list(getattr(getattr(job, "communicator", None), "updates", None)._queue or [])  # noqa: SLF001
    for update in updates:
        if getattr(update, "code", None) == Status.PROCESSING and getattr(update, "time", None) is not None:
            return time.perf_counter() - (time.time() - update.time.timestamp())
    return None


UNFINISHED = "unfinished: still waiting or running when the test ended (cancelled)"


def run_job(client: Any, kind: str, user: int, rng: random.Random, mix: Mix, run: Run,
            give_up: float = float("inf")) -> JobRecord:
    """Submit one job and wait for it (at most until `give_up`, perf_counter), recording when it started and
    finished."""
    api_name, args = job_call(kind, rng, mix)
    record = JobRecord(kind=kind, user=user, submitted=time.perf_counter())
    job = None
    try:
        job = client.submit(*args, api_name=api_name)
        while not job.done() and time.perf_counter() < give_up:
            time.sleep(0.2)
        if not job.done():
            job.cancel()
            record.error = UNFINISHED
        else:
            job.result()
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the test
        record.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:200]
    record.finished = time.perf_counter()
    if job is not None:
        record.started = started_at(job)
    if record.started is None and not record.error:
        record.started = record.finished  # finished before its start was seen: all of it counts as waiting
    with run.lock:
        run.records.append(record)
    return record


def user_loop(url: str, user: int, builder: bool, until: float, seed: int, mix: Mix, run: Run,
              auth: tuple[str, str] | None, first_delay: float, drain: float = 180.0) -> None:
    """One simulated user: connect, then jobs with pauses until `until` (perf_counter); a job not done `drain`
    seconds after that is cancelled and counted as unfinished."""
    from gradio_client import Client, handle_file

    rng = random.Random(seed * 1000 + user)
    time.sleep(first_delay)
    try:
        client = Client(url, auth=auth, verbose=False)
        if mix.vector_file:
            client.predict(handle_file(mix.vector_file), False, api_name="/load_vector")
    except Exception as exc:  # noqa: BLE001
        with run.lock:
            run.records.append(JobRecord("connect", user, time.perf_counter(), error=str(exc)[:200]))
        return
    while time.perf_counter() < until:
        if builder:
            kind = "build"
        else:
            roll = rng.random()
            kind = "evaluate" if roll < mix.evaluate else ("attribute" if roll < (1 + mix.evaluate) / 2 else "generate")
        run_job(client, kind, user, rng, mix, run, give_up=until + drain)
        if time.perf_counter() >= until:
            break
        time.sleep(rng.uniform(*mix.think) if not builder else rng.uniform(1.0, 3.0))
    client.close()


def rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` in MB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watch_memory(pid: int | None, start: float, stop: threading.Event, run: Run, every: float) -> None:
    while pid is not None and not stop.is_set():
        value = rss_mb(pid)
        if value is not None:
            run.memory.append((round(time.perf_counter() - start, 1), round(value, 1)))
        stop.wait(every)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_jobs(mine: list[JobRecord]) -> dict[str, Any]:
    """Count, errors, unfinished, p50/p95 wait, run and total time (seconds) of the finished ones among `mine`."""
    ok = [r for r in mine if not r.error]
    unfinished = [r for r in mine if r.error == UNFINISHED]
    waits = [r.wait for r in ok if r.wait is not None]
    runs = [r.run for r in ok if r.run is not None]
    totals = [r.finished - r.submitted for r in ok if r.finished is not None]  # press to answer, as a user waits
    # a job cancelled unstarted at the end waited at least until then: a lower bound, so the p95 is one too
    censored = waits + [r.finished - r.submitted for r in unfinished if r.started is None and r.finished]
    return {"jobs": len(mine), "wait_p95_with_unfinished": percentile(censored, 95),
            "errors": len(mine) - len(ok) - len(unfinished),
            "unfinished": len(unfinished), "wait_p50": percentile(waits, 50),
            "wait_p95": percentile(waits, 95), "wait_max": max(waits) if waits else None,
            "run_p50": percentile(runs, 50), "run_p95": percentile(runs, 95),
            "total_p50": percentile(totals, 50), "total_p95": percentile(totals, 95),
            "error_examples": sorted({r.error for r in mine if r.error and r.error != UNFINISHED})[:3]}


def summarize(records: list[JobRecord]) -> dict[str, dict[str, Any]]:
    """Per kind of job, and for all short jobs together ("short: attribute + generate"): see `summarize_jobs`."""
    out = {kind: summarize_jobs([r for r in records if r.kind == kind]) for kind in sorted({r.kind for r in records})}
    short = [r for r in records if r.kind in SHORT_KINDS]
    if short:
        out[SHORT_TOGETHER] = summarize_jobs(short)
    return out


def run_load(url: str, users: int, seconds: float, builders: int, seed: int = 0, mix: Mix | None = None,
             server_pid: int | None = None, auth: tuple[str, str] | None = None, ramp: float = 20.0,
             memory_every: float = 5.0, drain: float = 180.0) -> dict[str, Any]:
    """Run the simulated class and return the report (per kind of job, memory over time, settings).

    Args:
        url: the app's URL.
        users: simulated users.
        seconds: how long users keep submitting jobs (jobs in flight are then awaited).
        builders: how many of the users build vectors, again and again.
        seed: the random seed of the users' choices.
        mix: what users do (default `Mix()`).
        server_pid: the server's process id, for its memory (None: not measured).
        auth: (user, password) when the app asks for a login.
        ramp: users connect spread over this many seconds.
        memory_every: seconds between memory samples.
        drain: seconds after the end a job may still take before it is cancelled and counted as unfinished.

    Returns:
        A JSON-ready report.
    """
    mix = mix or Mix()
    run = Run()
    start = time.perf_counter()
    until = start + seconds
    stop = threading.Event()
    watcher = threading.Thread(target=watch_memory, args=(server_pid, start, stop, run, memory_every), daemon=True)
    watcher.start()
    threads = [threading.Thread(target=user_loop, args=(url, i, i < builders, until, seed, mix, run, auth,
                                                        ramp * i / max(users, 1), drain), daemon=True)
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    memory = [m for _, m in run.memory]
    return {"users": users, "builders": builders, "seconds": seconds, "wall_seconds": time.perf_counter() - start,
            "mix": asdict(mix), "kinds": summarize(run.records),
            "memory_mb": {"samples": run.memory, "first": memory[0] if memory else None,
                          "max": max(memory) if memory else None, "last": memory[-1] if memory else None},
            "records": [asdict(r) | {"wait": r.wait, "run": r.run} for r in run.records]}


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = ["| job | jobs | errors | unfinished | wait p50 (s) | wait p95 (s) | wait max (s) | run p50 (s) | "
             "run p95 (s) | press to answer p95 (s) | wait p95 with unfinished (s, at least) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, s in report["kinds"].items():
        lines.append(f"| {kind} | {s['jobs']} | {s['errors']} | {s['unfinished']} | {f(s['wait_p50'])} | "
                     f"{f(s['wait_p95'])} | "
                     f"{f(s['wait_max'])} | {f(s['run_p50'])} | {f(s['run_p95'])} | {f(s.get('total_p95'))} | "
                     f"{f(s['wait_p95_with_unfinished'])} |")
    mem = report["memory_mb"]
    lines.append(f"\nServer memory (RSS): first {f(mem['first'])} MB, max {f(mem['max'])} MB, "
                 f"last {f(mem['last'])} MB ({len(mem['samples'])} samples).")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(app_dir: Path, model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """Start `app.py` of `app_dir` on a free port and wait until it answers."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--model", model, "--port", str(port), *extra], cwd=app_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(app_dir)})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode} before it answered")
        try:
            urllib.request.urlopen(url, timeout=5).read(100)
            return proc, url
        except OSError:
            time.sleep(2)
    proc.kill()
    raise SystemExit("the app did not answer within 10 minutes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an app already running (else one is started)")
    parser.add_argument("--server-pid", type=int, help="its process id, for the memory samples")
    parser.add_argument("--app-dir", default=str(ROOT), help="checkout whose app.py is started (default: this one)")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--app-args", default="", help="extra app.py flags, e.g. --app-args=--classroom (with =)")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--builders", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--auth", help="user:password for an app behind a login")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds after the end before a job still waiting or running is cancelled")
    parser.add_argument("--json", help="write the full report (every job) here")
    parser.add_argument("--own-prompt", type=float, default=0.0,
                        help="share of generations on a new prompt of the user's own (never served from memory)")
    args = parser.parse_args(argv)
    proc = None
    url, pid = args.url, args.server_pid
    if not url:
        proc, url = start_server(Path(args.app_dir), args.model, args.app_args.split())
        pid = proc.pid
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    try:
        report = run_load(url, args.users, args.minutes * 60, args.builders, args.seed,
                          mix=Mix(own_prompt=args.own_prompt), server_pid=pid, auth=auth,
                          drain=args.drain)  # type: ignore[arg-type]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    report["app_dir"], report["model"], report["app_args"] = args.app_dir, args.model, args.app_args
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
