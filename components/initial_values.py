"""The page's first state baked into the layout: the panels' refresh for the initial session is applied to the
components before launch, so a page opens filled in, with no refresh round trip on load and none of the `.change`
events that such a refresh fires (eleven requests per page load before, ten of them outdated-mark and slider syncs).

Gradio applies an update at run time by rebuilding the component from its constructor arguments plus the update;
this does the same once, at build time, and copies the rebuilt attributes onto the component in the layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr


def _as_props(update: Any) -> dict[str, Any] | None:
    """The properties an output value sets ({"value": v} for a bare value), or None for gr.skip()."""
    if isinstance(update, dict) and update.get("__type__") == "update":
        props = {key: val for key, val in update.items() if key != "__type__"}
        return props or None
    return {"value": update}


def bake_initial_values(blocks: Sequence[Any], updates: Sequence[Any]) -> None:
    """Apply `updates` (what a refresh returns for `blocks`, in order) to the blocks themselves, before launch.

    Args:
        blocks: the refresh's output blocks (components, layout blocks such as Column, or gr.State).
        updates: one output value or gr.update(...) per block, as the refresh returns them.

    Raises:
        ValueError: when the two lengths differ.
    """
    if len(blocks) != len(updates):
        raise ValueError(f"{len(updates)} updates for {len(blocks)} blocks")
    for block, update in zip(blocks, updates):
        props = _as_props(update)
        if props is None:
            continue
        if isinstance(block, gr.State):
            if "value" in props:
                block.value = props["value"]
            continue
        args = {**getattr(block, "constructor_args", {}), **props, "render": False}
        rebuilt = type(block)(**args)
        for key in props:
            setattr(block, key, getattr(rebuilt, key))
        if hasattr(block, "constructor_args"):
            block.constructor_args.update(props)
