"""The shared server's pieces without a server: the session store (ids, cap, expiry), the per-user refusals, the
command line (--classroom defaults, each flag overriding, --auth and --auth-file, --share without a login warns)."""

from __future__ import annotations

import pytest

import app
from components.scheduling import LONG_QUEUE, SHORT_QUEUE, ServerLimits, refusal
from components.session import new_session
from components.session_store import SessionStore, new_browser_id


def test_store_keeps_sessions_by_browser_and_login_with_a_cap_and_an_expiry():
    now = [0.0]
    store = SessionStore(max_sessions=2, hours=1, clock=lambda: now[0])
    a, b, c = (new_browser_id() for _ in range(3))
    assert a != b and len(a) == 32
    sa, sb = new_session("tiny-random-llama"), new_session("tiny-random-llama")
    store.put(store.key(a), sa)
    store.put(store.key(b), sb)
    assert store.get(store.key(a)) is sa and store.get(store.key(b)) is sb
    assert store.get(store.key(a, "alice")) is None  # the same browser id under another login is another session
    sc = new_session("tiny-random-llama")
    store.put(store.key(c), sc)  # over the cap: the least recently used (a) goes
    assert store.get(store.key(a)) is None and store.get(store.key(b)) is sb
    now[0] = 1800.0
    assert store.get(store.key(c)) is sc  # used half an hour later: kept longer
    now[0] = 3601.0
    assert store.get(store.key(b)) is None and store.get(store.key(c)) is sc  # b expired an hour after its last use
    for bad in (None, "", "short", "x" * 31, a[:-1] + "!", 123, {"id": a}):
        assert store.key(bad) is None


def test_refusal_bounds_waiting_jobs_and_long_jobs_per_user():
    room = ServerLimits.classroom()
    assert refusal(SHORT_QUEUE, [], [LONG_QUEUE], room) is None  # a short job while one's build runs: fine
    assert refusal(LONG_QUEUE, [], [], room) is None
    assert "long job" in refusal(LONG_QUEUE, [], [LONG_QUEUE], room)
    assert "long job" in refusal(LONG_QUEUE, [LONG_QUEUE], [], room)
    assert "3 jobs waiting" in refusal(SHORT_QUEUE, [SHORT_QUEUE] * 3, [], room)
    assert refusal(LONG_QUEUE, [LONG_QUEUE] * 9, [LONG_QUEUE], ServerLimits()) is None  # one person: no limits


def test_classroom_defaults_and_flags_that_override_them():
    plain = app.limits_from(app.parse_args([]))
    assert plain == ServerLimits()
    room = app.limits_from(app.parse_args(["--classroom"]))
    assert room == ServerLimits.classroom()
    assert (room.max_rows, room.job_seconds, room.queued_per_user, room.long_per_user) == (32, 600.0, 3, 1)
    tuned = app.limits_from(app.parse_args(["--classroom", "--max-rows", "8", "--job-time-limit", "0",
                                            "--short-slots", "2"]))
    assert (tuned.max_rows, tuned.job_seconds, tuned.short_slots, tuned.long_per_user) == (8, None, 2, 1)
    assert room.long_yield_seconds == 2.0
    assert app.limits_from(app.parse_args(["--long-yield-seconds", "0"])).long_yield_seconds == 0
    assert room.overtake_seconds == 30.0
    assert app.limits_from(app.parse_args(["--classroom", "--overtake-seconds", "0"])).overtake_seconds == 0


def test_the_warm_up_runs_with_classroom_or_when_asked_and_a_failure_does_not_stop_the_server(monkeypatch, capsys):
    warmed, launched = [], []
    monkeypatch.setattr(app, "build_app", lambda *a, **k: "demo")
    monkeypatch.setattr(app, "launch_app", lambda demo, **k: launched.append(k))
    monkeypatch.setattr("components.warm_up.warm_first_screen", lambda name, log=print: warmed.append(name) or [])
    app.main([])
    app.main(["--classroom", "--model", "tiny-random-llama"])
    app.main(["--classroom", "--no-warm-up"])
    app.main(["--warm-up"])
    assert warmed == ["tiny-random-llama", app.DEFAULT_MODEL] and len(launched) == 4

    def broken(name, log=print):
        raise RuntimeError("no model here")

    monkeypatch.setattr("components.warm_up.warm_first_screen", broken)
    app.main(["--classroom"])
    assert len(launched) == 5
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warm-up skipped")]
    assert len(err) == 1 and "Traceback" not in err[0]


def test_auth_from_flags_and_a_file(tmp_path, capsys):
    users = tmp_path / "class.txt"
    users.write_text("# the class\nalice:pa:ss\n\n bob : secret\n", encoding="utf-8")
    args = app.parse_args(["--auth", "teacher:t0p", "--auth-file", str(users)])
    assert args.users == [("teacher", "t0p"), ("alice", "pa:ss"), ("bob", "secret")]
    for bad in (["--auth", "nopassword"], ["--auth", ":x"], ["--auth-file", str(tmp_path / "missing.txt")],
                ["--max-rows", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            app.parse_args(bad)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "Traceback" not in "\n".join(err) and err[-1].startswith("usage:") is False


def test_share_without_auth_warns_in_one_line(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(app, "build_app", lambda *a, **k: "demo")
    monkeypatch.setattr(app, "launch_app", lambda demo, **k: launched.append(k))
    app.main(["--share"])
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning")]
    assert len(warning) == 1 and "--auth" in warning[0] and launched[0]["auth"] is None
    app.main(["--share", "--auth", "t:p"])
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning")]
    assert launched[1]["auth"] == [("t", "p")] and launched[1]["share"] is True
