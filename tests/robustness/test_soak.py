"""Concurrency soak (bounded, loopback): 8 gradio_client sessions in parallel mix /attribute, /generate (steered and
unsteered) and /build_vector with their own vectors. Afterwards: no hook is left on the shared model, the unsteered
output of a fixed prompt is byte-identical to before, every session's steered output equals what its own vector gives
alone, and memory growth is bounded."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

pytest.importorskip("gradio_client")
pytest.importorskip("app")
psutil = pytest.importorskip("psutil")
from gradio_client import Client  # noqa: E402

from tests.robustness.bad_inputs import TEXT_MODEL  # noqa: E402

CLIENTS = 8
ROUNDS = 2
LAYER = 1
STRENGTHS = [(-1) ** i * 0.5 * (i + 1) for i in range(CLIENTS)]  # a different strength per session (-4..4)
FIXED_PROMPT = "The weather today is"
MAX_RSS_GROWTH_MB = 500
EXAMPLES = [
    ("Q: Is the sky blue?\nA:", " Yes", " No"),
    ("Q: Which animal barks?\nA:", " A dog", " A fish"),
    ("Q: What is the capital of France?\nA:", " Paris", " London"),
    ("Q: Is fire cold?\nA:", " No", " Yes"),
    ("Q: What colour is grass?\nA:", " Green", " Red"),
    ("Q: How many legs has a cat?\nA:", " Four", " Two"),
    ("Q: Can fish fly?\nA:", " Mostly not", " Always"),
    ("Q: Is water wet?\nA:", " Yes it is", " Never"),
]
METHODS = ["caa", "grains", "mean", "pca"]


def unsteered_in_process() -> str:
    """The shared model's unsteered continuation, straight through the library (sees any hook left behind)."""
    from components.model_cache import MODELS
    from grains.generation import GenerationSettings, generate_one
    from grains.steering import active_hook_count

    lm = MODELS.get(TEXT_MODEL)
    assert active_hook_count(lm) == 0, "a steering hook was left on the shared model"
    return generate_one(lm, FIXED_PROMPT, settings=GenerationSettings(max_new_tokens=8))


def test_eight_parallel_sessions(app_server, test_output_dir):
    url = app_server(TEXT_MODEL)
    process = psutil.Process()
    reference = Client(url, verbose=False)
    reference.predict(*EXAMPLES[0], 2, None, api_name="/attribute")
    reference.predict("example", "", None, 1, 0, "caa", 2, 2, False, api_name="/build_vector")
    unsteered_api_before, _ = reference.predict(FIXED_PROMPT, LAYER, 0.0, 8, None, api_name="/generate")
    unsteered_lib_before = unsteered_in_process()
    rss_before = process.memory_info().rss

    clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
    served, errors, lock = [0], [], threading.Lock()
    steered: dict[int, list[str]] = {i: [] for i in range(CLIENTS)}
    unsteered: dict[int, list[str]] = {i: [] for i in range(CLIENTS)}
    methods: dict[int, str] = {}

    def request(c: Client, *args: Any, api_name: str) -> Any:
        try:
            out = c.predict(*args, api_name=api_name)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(f"{api_name}: {type(exc).__name__}: {exc}")
            raise
        with lock:
            served[0] += 1
        return out

    def session(i: int) -> None:
        c = clients[i]
        prompt, chosen, rejected = EXAMPLES[i]
        method, k = METHODS[i % len(METHODS)], 1 + i % 3
        request(c, prompt, chosen, rejected, 2, None, api_name="/attribute")
        summary, _ = request(c, "example", "", None, 1, 0, method, k, 2, False, api_name="/build_vector")
        methods[i] = summary["method"]
        for _ in range(ROUNDS):
            plain, same = request(c, FIXED_PROMPT, LAYER, 0.0, 8, None, api_name="/generate")
            if plain != same:
                with lock:
                    errors.append(f"session {i}: strength 0 changed the text: {plain!r} vs {same!r}")
            base, moved = request(c, FIXED_PROMPT, LAYER, STRENGTHS[i], 8, None, api_name="/generate")
            unsteered[i] += [plain, base]
            steered[i].append(moved)
            request(c, prompt, chosen, rejected, 2, None, api_name="/attribute")

    threads = [threading.Thread(target=lambda i=i: _guard(session, i), daemon=True) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    seconds = time.perf_counter() - start
    assert not any(t.is_alive() for t in threads), "a session hung"

    # alone, one after another: each session's vector gives the same steered text as under load
    alone = {i: clients[i].predict(FIXED_PROMPT, LAYER, STRENGTHS[i], 8, None, api_name="/generate")[1]
             for i in range(CLIENTS)}
    unsteered_api_after, _ = reference.predict(FIXED_PROMPT, LAYER, 0.0, 8, None, api_name="/generate")
    unsteered_lib_after = unsteered_in_process()
    rss_after = process.memory_info().rss

    figures = {"clients": CLIENTS, "requests_served": served[0], "errors": len(errors), "seconds": round(seconds, 1),
               "rss_before_mb": round(rss_before / 2**20), "rss_after_mb": round(rss_after / 2**20),
               "rss_growth_mb": round((rss_after - rss_before) / 2**20),
               "distinct_steered_outputs": len({s for v in steered.values() for s in v})}
    print("soak:", json.dumps(figures))
    (test_output_dir / "soak.json").write_text(json.dumps({**figures, "error_messages": errors[:10]}, indent=2))

    assert not errors, errors[:5]
    assert served[0] == CLIENTS * (2 + 3 * ROUNDS)
    assert sorted(methods) == list(range(CLIENTS))
    assert unsteered_api_after == unsteered_api_before
    assert unsteered_lib_after == unsteered_lib_before
    for i in range(CLIENTS):
        assert set(unsteered[i]) == {unsteered_api_before}, (i, unsteered[i])
        assert set(steered[i]) == {alone[i]}, (i, steered[i], alone[i])
    assert rss_after - rss_before < MAX_RSS_GROWTH_MB * 2**20, figures


def _guard(fn: Any, i: int) -> None:
    try:
        fn(i)
    except Exception:  # noqa: BLE001 - recorded in `errors` by request(); assertion errors surface below
        pass
