"""Shared app/server fixtures: one GrAInS Studio server per default model for the whole test session."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_server() -> Iterator[Callable[[str], str]]:
    """`app_server(model)` -> base URL of a running app whose default model is `model` (started once per model,
    on 127.0.0.1 and a free port, closed at the end of the session)."""
    servers: dict[str, tuple[object, str]] = {}

    def start(model: str = "tiny-random-llama") -> str:
        if model not in servers:
            import app

            demo = app.build_app(model, preload=True)
            port = free_port()
            app.launch_app(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            servers[model] = (demo, f"http://127.0.0.1:{port}/")
        return servers[model][1]

    yield start
    for demo, _ in servers.values():
        demo.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    """test-output/ at the repository root (gitignored): screenshots and timings."""
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    return out
