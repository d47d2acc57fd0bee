"""Nothing lost on reload: each browser keeps an opaque random id (gr.BrowserState, encrypted in its localStorage);
the server keeps that browser's Session (vector, last attribution, settings) and the last values of its results
and settings fields under the id, with a size cap and an expiry. A reloaded page or a dropped connection gets them
back; another browser has another id and never sees them.

Only the id travels: vectors are tensors and stay in server memory; nothing from the client is ever unpickled.
"""

from __future__ import annotations

import functools
import inspect
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from components.session import Session

BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
MAX_STORED_SESSIONS = 300
SESSION_HOURS = 12.0
# Component types whose values are not kept: state holders, buttons, and files (a path into this server's temp
# folders means nothing after a restart, and uploads are the user's to send again).
NOT_KEPT = {"State", "BrowserState", "Button", "UploadButton", "DownloadButton", "File", "Image", "Gallery", "Timer",
            "ClearButton", "LoginButton"}


def new_browser_id() -> str:
    """A fresh opaque id: 32 random URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


class SessionStore:
    """Sessions by (login name, browser id), least recently used first out, each forgotten after `hours` unused.

    Args:
        max_sessions: the most sessions kept.
        hours: how long an unused session is kept.
        clock: time source in seconds (tests pass a fake one).
    """

    def __init__(self, max_sessions: int = MAX_STORED_SESSIONS, hours: float = SESSION_HOURS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_sessions = max(1, int(max_sessions))
        self.seconds = float(hours) * 3600
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Session]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(browser_id: Any, username: str | None = None) -> str | None:
        """The store key of a browser (None for anything that is not an id we made)."""
        if not isinstance(browser_id, str) or not BROWSER_ID.match(browser_id):
            return None
        return f"{username or ''}/{browser_id}"

    def _expire(self, now: float) -> None:
        while self._items:
            oldest, (seen, _) = next(iter(self._items.items()))
            if now - seen <= self.seconds:
                break
            del self._items[oldest]

    def get(self, key: str | None) -> Session | None:
        """The session kept under `key` (None when unknown or expired); using it keeps it longer."""
        if key is None:
            return None
        now = self._clock()
        with self._lock:
            self._expire(now)
            item = self._items.get(key)
            if item is None:
                return None
            self._items[key] = (now, item[1])
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, session: Session) -> None:
        """Keep `session` under `key` (the oldest sessions go beyond the cap)."""
        now = self._clock()
        session.store_key = key
        with self._lock:
            self._items[key] = (now, session)
            self._items.move_to_end(key)
            self._expire(now)
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


STORE = SessionStore()


def kept(component: Any) -> bool:
    """Whether a component's value is kept for a reload."""
    return type(component).__name__ not in NOT_KEPT and hasattr(component, "_id")


def remember(fn: Callable, inputs: list[Any], outputs: list[Any], session_at: int) -> Callable:
    """`fn` that also writes the values it was given and returned into its session's `ui_values` (by component id),
    for the fields a reload restores; generators record each step.

    Args:
        fn: an event handler whose argument `session_at` is the Session.
        inputs: the event's input components, in argument order.
        outputs: the event's output components, in return order.
        session_at: the index of the Session among the arguments.

    Returns:
        The wrapped handler (same signature, same kind).
    """

    def record(args: tuple[Any, ...], result: Any) -> None:
        session = args[session_at] if len(args) > session_at else None
        if isinstance(result, list | tuple) and len(outputs) != 1:
            values = list(result)
        else:
            values = [result]
        for value in values:
            if isinstance(value, Session) and value is not session and session is not None and session.store_key:
                STORE.put(session.store_key, value)  # a handler that returned another Session object
                session = value
        if not isinstance(session, Session):
            return
        for component, value in zip(inputs, args, strict=False):
            if kept(component):
                session.ui_values[component._id] = value
        for component, value in zip(outputs, values, strict=False):
            if kept(component):
                session.ui_values[component._id] = value

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for item in fn(*args, **kwargs):
                record(args, item)
                yield item

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        record(args, result)
        return result

    return wrapper


def remember_all(demo: Any, state: Any) -> list[Any]:
    """Wrap every handler of `demo` that takes the session `state` so its fields' values are kept (see `remember`).

    Args:
        demo: the app, built.
        state: the gr.State holding the Session.

    Returns:
        The kept components (each once, in a stable order): what a reload restores.
    """
    restorable: dict[int, Any] = {}
    for fn in demo.fns.values():
        ids = [getattr(c, "_id", None) for c in fn.inputs]
        if fn.fn is None or state._id not in ids or getattr(fn.fn, "_grains_remembers", False) or fn.inputs_as_dict:
            continue
        fn.fn = remember(fn.fn, list(fn.inputs), list(fn.outputs), ids.index(state._id))
        fn.fn._grains_remembers = True
        for component in (*fn.inputs, *fn.outputs):
            if kept(component):
                restorable.setdefault(component._id, component)
    return list(restorable.values())


RESTORING_CLASS = "grains-restoring"  # on <html> while a page load's restore runs (assets/app.css greys the page)
HOLD_INPUT_JS = (f"() => {{ const root = document.documentElement; root.classList.add('{RESTORING_CLASS}'); "
                 f"setTimeout(() => root.classList.remove('{RESTORING_CLASS}'), 20000); }}")  # never stuck for good
RELEASE_INPUT_JS = f"() => {{ document.documentElement.classList.remove('{RESTORING_CLASS}'); }}"
RESULTS_AGAIN_AFTER = 0.6  # s: results are sent again after the settings' .change events have marked them outdated


def _merged(base: Any, value: Any) -> Any:
    """A refresh's update for a component with the kept value laid over it (choices from the refresh, value kept)."""
    is_update = isinstance(value, dict) and value.get("__type__") == "update"
    if isinstance(base, dict) and base.get("__type__") == "update":
        return {**base, **value} if is_update else {**base, "value": value}
    return value


def connect_restore(demo: Any, state: Any, refresh: Callable[[Session], list[Any]], refresh_outputs: list[Any],
                    restorable: list[Any]) -> Any:
    """On page load: give a new browser its id and keep its session; give a known browser its kept session back,
    the panels refreshed for it and its fields' last values; then send the results once more, after the restored
    settings' `.change` events (which mark results outdated) have run.

    Args:
        demo: the app (inside its `with gr.Blocks()`).
        state: the gr.State holding the Session.
        refresh: session -> updates for `refresh_outputs` (the app's refresh_all).
        refresh_outputs: what `refresh` updates.
        restorable: the kept components (from `remember_all`).

    Returns:
        The gr.BrowserState holding the id.
    """
    browser = gr.BrowserState(None, storage_key="grains-studio-browser")
    targets = list({c._id: c for c in (*refresh_outputs, *restorable)}.values())
    outputs_of_jobs = {c._id for fn in demo.fns.values() if getattr(fn.fn, "_grains_remembers", False)
                       for c in fn.outputs}
    results = [c for c in restorable if c._id in outputs_of_jobs]

    def restore(browser_id: Any, session: Session, request: gr.Request) -> list[Any]:
        username = getattr(request, "username", None)
        key = STORE.key(browser_id, username)
        stored = STORE.get(key)
        if stored is None:
            browser_id = browser_id if key is not None else new_browser_id()
            STORE.put(STORE.key(browser_id, username) or "", session)
            # the State already holds this very session: sending it back could overwrite what a job the user started
            # meanwhile stored in it
            return [browser_id, gr.skip(), *[gr.skip()] * len(targets)]
        updates = dict(zip([c._id for c in refresh_outputs], refresh(stored), strict=True))
        for cid, value in stored.ui_values.items():
            updates[cid] = _merged(updates[cid], value) if cid in updates else value
        return [browser_id, stored, *[updates.get(c._id, gr.skip()) for c in targets]]

    def results_again(session: Session) -> list[Any]:
        if not session.ui_values:
            return [gr.skip()] * len(results)
        time.sleep(RESULTS_AGAIN_AFTER)
        return [session.ui_values.get(c._id, gr.skip()) for c in results]

    quiet = {"show_progress": "hidden", "show_progress_on": [browser]}  # no status tracker over the page's fields
    # A click before the restore has landed would be overwritten by it (the stored session and its fields arrive
    # after the click's job started on the page's fresh session): the page takes no input until the restore is done.
    demo.load(None, js=HOLD_INPUT_JS, queue=False, api_visibility="private")
    demo.load(restore, inputs=[browser, state], outputs=[browser, state, *targets], queue=False,
              api_visibility="private", **quiet).then(
        results_again, inputs=state, outputs=results, queue=False, api_visibility="private", **quiet).then(
        None, js=RELEASE_INPUT_JS, queue=False, api_visibility="private")
    return browser
