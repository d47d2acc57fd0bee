"""Changes to a shared model that act only in the context that made them: forward hooks (steering, recording) and
replaced layer forwards (skipping layers whose output is kept). A server runs several jobs on one model at once; a
plain hook or a patched `forward` is global to the module and would act on every job.

"The context" is the thread (or a thread started with a copy of its context, `contextvars.copy_context().run`);
another thread runs the model as if the change were not there.

    with local_forward_hooks([(layer, hook)]):   # only this thread's passes see `hook`
        model(...)
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

_OWNED: ContextVar[frozenset[int]] = ContextVar("grains_owned_hooks", default=frozenset())
_OVERRIDES: ContextVar[dict[int, Callable[..., Any]] | None] = ContextVar("grains_forward_overrides", default=None)
_KEYS = itertools.count(1)


class LocalHookHandle:
    """What `local_forward_hook` returns: `remove()` takes the hook off (like a torch RemovableHandle)."""

    def __init__(self, handle: Any, key: int):
        self._handle, self._key = handle, key

    def remove(self) -> None:
        """Take the hook off the module and out of this context."""
        self._handle.remove()
        _OWNED.set(_OWNED.get() - {self._key})


def local_forward_hook(module: torch.nn.Module, hook: Callable[..., Any]) -> LocalHookHandle:
    """Register `hook` as a forward hook of `module` that acts only in the current context.

    Args:
        module: the module.
        hook: a forward hook (module, args, output) -> output or None.

    Returns:
        A handle whose `remove()` takes it off.
    """
    return _register_local(module.register_forward_hook, hook)


def local_forward_pre_hook(module: torch.nn.Module, hook: Callable[..., Any]) -> LocalHookHandle:
    """Register `hook` as a forward pre-hook of `module` that acts only in the current context.

    Args:
        module: the module.
        hook: a forward pre-hook (module, args) -> new args or None.

    Returns:
        A handle whose `remove()` takes it off.
    """
    return _register_local(module.register_forward_pre_hook, hook)


def _register_local(register: Callable[..., Any], hook: Callable[..., Any]) -> LocalHookHandle:
    """Register (with a module's `register_forward_hook` or `register_forward_pre_hook`) a hook that calls `hook` only
    in the current context and does nothing in any other."""
    key = next(_KEYS)

    def run(*args: Any) -> Any:
        return hook(*args) if key in _OWNED.get() else None

    _OWNED.set(_OWNED.get() | {key})
    return LocalHookHandle(register(run), key)


@contextmanager
def local_forward_hooks(hooks: Sequence[tuple[torch.nn.Module, Callable[..., Any]]]) -> Iterator[None]:
    """Forward hooks that act only in the current context, taken off on every path.

    Args:
        hooks: (module, forward hook) pairs, as for `register_forward_hook`.

    Returns:
        A context manager.
    """
    handles: list[LocalHookHandle] = []
    try:
        for module, hook in hooks:
            handles.append(local_forward_hook(module, hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _dispatcher(module: torch.nn.Module) -> Callable[..., Any]:
    own = module.__dict__.get("forward")  # an instance forward set by someone else is kept as the original
    original = own if own is not None else functools.partial(type(module).forward, module)

    def forward(*args: Any, **kwargs: Any) -> Any:
        override = (_OVERRIDES.get() or {}).get(id(module))
        return override(*args, **kwargs) if override is not None else original(*args, **kwargs)

    forward._grains_original = own  # type: ignore[attr-defined]
    return forward


_USERS: dict[int, int] = {}  # module id -> contexts inside local_forward_overrides for it
_USERS_LOCK = threading.Lock()


@contextmanager
def local_forward_overrides(overrides: Sequence[tuple[torch.nn.Module, Callable[..., Any]]]) -> Iterator[None]:
    """Inside, the current context's forwards of each module call its replacement instead; other contexts run the
    module's own forward. A module carries a small dispatcher while any context overrides it (one dict lookup per
    call), and its own forward again once none does.

    Args:
        overrides: (module, replacement forward) pairs.

    Returns:
        A context manager.
    """
    modules = [module for module, _ in overrides]
    with _USERS_LOCK:
        for module in modules:
            if not _USERS.get(id(module)):
                module.forward = _dispatcher(module)
            _USERS[id(module)] = _USERS.get(id(module), 0) + 1
    token = _OVERRIDES.set({**(_OVERRIDES.get() or {}), **{id(module): fn for module, fn in overrides}})
    try:
        yield
    finally:
        try:
            _OVERRIDES.reset(token)
        except ValueError:  # left in another context: drop just these
            gone = {id(m) for m in modules}
            _OVERRIDES.set({k: v for k, v in (_OVERRIDES.get() or {}).items() if k not in gone})
        with _USERS_LOCK:
            for module in modules:
                _USERS[id(module)] -= 1
                if not _USERS[id(module)]:
                    del _USERS[id(module)]
                    own = module.__dict__["forward"]._grains_original
                    if own is None:
                        del module.forward
                    else:
                        module.forward = own
