"""Hallucination check actions (VLMs): the shipped photos and their labels, proposed absent objects, the check of
one photo, a vector built from probes with a held-out re-check, and one probe's patch heatmap. Every computation is
a call into `grains.vlm.check`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.inputs import whole
from components.model_cache import session_model
from components.session import IMAGES_DIR, Session
from grains.errors import InputError

MAX_HEATMAP_STEPS = 64


def shipped_photos() -> list[tuple[str, str]]:
    """(label, path) of the photos that ship with the app."""
    return [(p.stem, str(p)) for p in sorted(IMAGES_DIR.glob("*.jpg"))]


def shipped_labels(path: str | None) -> tuple[str, str]:
    """The shipped POPE-style labels of a shipped photo as (present, absent) text; empty for any other photo."""
    if not path:
        return "", ""
    from grains.data import load_builtin

    _, rows = load_builtin("pope_style")
    name = Path(path).name
    mine = [r for r in rows if Path(r.image).name == name]
    present = ", ".join(r.object for r in mine if r.answer == "yes")
    absent = ", ".join(r.object for r in mine if r.answer == "no")
    return present, absent


def _objects_match(text: str, objects: list[str]) -> bool:
    from grains.vlm.check import object_key, parse_objects

    return [object_key(o) for o in parse_objects(text, "absent")] == [object_key(o) for o in objects]


def propose(present: str, setting: str, n: Any) -> tuple[str, dict]:
    """Absent objects proposed in `setting` (as text for the box) and the proposal as JSON."""
    from grains.vlm.check import parse_objects, propose_absent

    objects = parse_objects(present, "present")
    if not objects:
        raise InputError("List the objects that are in the photo first: the proposal leaves them out.")
    proposal = propose_absent(objects, setting or "random", whole(n, "The number of absent objects") if n else None)
    return ", ".join(proposal.objects), {"present": present, **proposal.to_dict()}


def _settings_for(present: str, absent: str, proposed: dict | None) -> tuple[str | None, str | None, int | None]:
    """(absent, setting, n) for the library: a proposal the user kept is re-made by the library (same seed), so the
    report names its setting; anything the user typed is used as typed."""
    if proposed and proposed.get("present") == present and absent.strip() and _objects_match(absent,
                                                                                             proposed["objects"]):
        return None, proposed["setting"], len(proposed["objects"])
    return absent, None, None


def run_check(session: Session, image: str | None, present: str, absent: str, setting: str | None,
              proposed: dict | None = None, progress: Any = None) -> dict:
    """The unsteered check of the photo; returns the report as JSON (with the inputs it came from)."""
    from grains.vlm.check import check_image

    lm = session_model(session)
    if not image:
        raise InputError("Upload a photo or pick a shipped one first.")
    absent_value, setting_value, n = _settings_for(present, absent or "", proposed)
    if not (absent_value or "").strip() and setting_value is None:
        setting_value = setting or "random"
    report = check_image(lm, image, present, absent_value or None, setting_value, n_absent=n, progress=progress)
    data = report.to_dict()
    data["inputs"] = {"image": image, "present": present, "absent": absent_value, "setting": setting_value,
                      "n_absent": n, "model": session.model_name}
    return data


def run_recheck(session: Session, last: dict | None, source: str, max_build: Any, steps: Any, suggested: bool,
                layer: Any, strength: Any, progress: Any = None, should_stop: Any = None) -> dict:
    """Build a vector (shipped or own probes) and re-check the last check's photo on probes it never saw."""
    from grains.vlm.check import steer_and_recheck

    lm = session_model(session)
    if not last or (last.get("inputs") or {}).get("model") != session.model_name:
        raise InputError("Run the check first (with this model): the re-check asks the same probes.")
    inputs = last["inputs"]
    report = steer_and_recheck(
        lm, inputs["image"], inputs["present"], inputs["absent"], inputs["setting"], source=source or "shipped",
        max_build=whole(max_build, "The number of shipped probes"), steps=whole(steps, "IG steps"),
        layer=None if suggested or layer is None else whole(layer, "The layer"),
        strength=None if suggested or strength is None else float(strength),
        n_absent=inputs["n_absent"], progress=progress, should_stop=should_stop)
    data = report.to_dict()
    data["inputs"] = inputs
    return data


def probe_heatmap(session: Session, last: dict | None, index: Any, steps: Any,
                  alpha: float) -> tuple[Any, dict, dict, int]:
    """The photo with probe `index`'s contrastive patch heatmap (None without a patch grid), the probe, the
    attribution's summary and the IG steps used."""
    from grains.vlm.check import where_the_model_looked

    if not last:
        raise InputError("Run the check first.")
    probes = last["probes"]
    i = whole(index, "The probe")
    if not 0 <= i < len(probes):
        raise InputError(f"There is no probe {i}.")
    lm = session_model(session)
    if last["inputs"].get("model") != session.model_name:
        raise InputError("The model changed since this check: run it again.")
    probe = probes[i]
    steps = whole(steps, "IG steps")
    if not 1 <= steps <= MAX_HEATMAP_STEPS:
        raise InputError(f"IG steps must be from 1 to {MAX_HEATMAP_STEPS}.")
    look = where_the_model_looked(lm, last["inputs"]["image"], probe["object"], truth=probe["truth"], steps=steps)
    info = look.summary()
    overlay = look.overlay(last["inputs"]["image"], alpha=float(alpha)) if look.grid is not None else None
    return overlay, probe, info, steps
