"""Hallucination check actions (VLMs): the shipped photos and their labels, a generated scene with known contents,
proposed absent objects, the check of one photo, a re-check steered with a vector built from probes (or the loaded
one), and one probe's patch heatmap (with the true boxes and their scores on a generated scene). Every computation is
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


def new_scene(seed: Any = None) -> dict:
    """A generated scene with known contents (grains.vlm.toy.demo): the picture saved as PNG for the photo box, the
    present and absent objects as text (the adversarial absent one first) and every object's box."""
    from components.session import scratch_dir
    from grains.vlm.toy.demo import demo_scene

    demo = demo_scene(None if seed in (None, "") else whole(seed, "The scene seed"))
    path = scratch_dir("scene-") / f"scene_{demo.seed}.png"
    demo.scene.image.save(path)
    return {**demo.to_dict(), "image": str(path), "present_text": ", ".join(demo.present),
            "absent_text": ", ".join(demo.absent)}


def new_scene_api(seed: Any = None) -> tuple[str, dict]:
    """/new_scene: a generated scene with known contents (seed: 1,200,000,000 to 1,299,999,799, or empty for a random
    one): the picture (PNG) and its JSON (seed, present, absent, adversarial partners, boxes, digest)."""
    data = new_scene(seed)
    return data.pop("image"), data


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
              proposed: dict | None = None, progress: Any = None, scene: dict | None = None) -> dict:
    """The unsteered check of the photo; returns the report as JSON (with the inputs it came from, and the generated
    scene's boxes when the photo is that scene)."""
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
                      "n_absent": n, "model": session.model_name,
                      "scene": scene if scene and scene.get("digest") == data["image"].get("digest") else None}
    return data


def run_recheck(session: Session, last: dict | None, source: str, max_build: Any, steps: Any, suggested: bool,
                layer: Any, strength: Any, progress: Any = None, should_stop: Any = None) -> dict:
    """Build a vector (shipped or own probes) and re-check the last check's photo on probes it never saw."""
    from grains.vlm.check import steer_and_recheck

    lm = session_model(session)
    if not last or (last.get("inputs") or {}).get("model") != session.model_name:
        raise InputError("Run the check first (with this model): the re-check asks the same probes.")
    inputs = last["inputs"]
    if source == "vector":
        return _recheck_with_session_vector(session, lm, inputs, suggested, layer, strength, progress)
    report = steer_and_recheck(
        lm, inputs["image"], inputs["present"], inputs["absent"], inputs["setting"], source=source or "shipped",
        max_build=whole(max_build, "The number of shipped probes"), steps=whole(steps, "IG steps"),
        layer=None if suggested or layer is None else whole(layer, "The layer"),
        strength=None if suggested or strength is None else float(strength),
        n_absent=inputs["n_absent"], progress=progress, should_stop=should_stop)
    data = report.to_dict()
    data["inputs"] = inputs
    return data


def _recheck_with_session_vector(session: Session, lm: Any, inputs: dict, suggested: bool, layer: Any, strength: Any,
                                 progress: Any) -> dict:
    """The same probes unsteered and steered with the session's vector (e.g. a recipe's shipped one, built and
    evaluated on other scenes): nothing is built, so every probe of the photo is a held-out one."""
    from grains.vlm.check import check_image

    if session.vector is None:
        raise InputError("No vector is loaded: build one here from probes, or load one on the Steer tab.")
    report = check_image(lm, inputs["image"], inputs["present"], inputs["absent"], inputs["setting"],
                         steering=session.vector,
                         layer=None if suggested or layer is None else whole(layer, "The layer"),
                         strength=None if suggested or strength is None else float(strength),
                         n_absent=inputs["n_absent"], progress=progress)
    data = report.to_dict()
    data["inputs"] = inputs
    data["split"] = {"source": "vector", "note": f"Steered with the loaded vector ({session.vector_label}); it was "
                     "not built from this photo's probes, so every probe here is one it never saw.",
                     "build_objects": [], "check_objects": [f"{p['object']} ({p['truth']})" for p in data["probes"]],
                     "n_build": 0, "n_check": len(data["probes"]), "vector": session.vector_label}
    return data


def probe_heatmap(session: Session, last: dict | None, index: Any, steps: Any,
                  alpha: float) -> tuple[Any, dict, dict, int]:
    """The photo with probe `index`'s contrastive patch heatmap (None without a patch grid), the probe, the
    attribution's summary (with `grounding` on a generated scene) and the IG steps used."""
    if not last:
        raise InputError("Run the check first.")
    probes = last["probes"]
    i = whole(index, "The probe")
    if not 0 <= i < len(probes):
        raise InputError(f"There is no probe {i}.")
    if last["inputs"].get("model") != session.model_name:
        raise InputError("The model changed since this check: run it again.")
    probe = probes[i]
    overlay, info, used = look_at(session, last["inputs"]["image"], probe["object"], probe["truth"], steps, alpha,
                                  last["inputs"].get("scene"))
    return overlay, probe, info, used


def probe_heatmap_api(session: Session, image: str | None, obj: str, truth: str, scene: dict | None,
                      steps: Any = 16) -> tuple[Any, dict]:
    """/probe_heatmap: one object's patch heatmap over an uploaded photo; with the /new_scene JSON of that same
    picture, the true boxes are outlined and scored."""
    if not image:
        raise InputError("Give the photo.")
    overlay, info, _ = look_at(session, image, obj, truth, steps, 0.55, scene)
    return overlay, info


def look_at(session: Session, image: str, obj: str, truth: str, steps: Any, alpha: float,
            scene: dict | None) -> tuple[Any, dict, int]:
    """(overlay, summary, steps): the heatmap; on the generated scene `scene` (same image digest) the true boxes are
    outlined and the heatmap scored against them (summary["grounding"])."""
    from grains.vlm.check import where_the_model_looked

    lm = session_model(session)
    steps = whole(steps, "IG steps")
    if not 1 <= steps <= MAX_HEATMAP_STEPS:
        raise InputError(f"IG steps must be from 1 to {MAX_HEATMAP_STEPS}.")
    look = where_the_model_looked(lm, image, obj, truth=truth, steps=steps)
    info = look.summary()
    if look.grid is None:
        return None, info, steps
    if not isinstance(scene, dict) or scene.get("digest") != look.probe.id.split(":", 1)[0]:
        return look.overlay(image, alpha=float(alpha)), info, steps
    if not isinstance(scene.get("boxes"), dict) or len(scene.get("size") or []) != 2:
        raise InputError("The scene must be the JSON /new_scene gave (with its boxes and size).")
    probe = {"object": obj, "truth": look.probe.truth}
    info["grounding"] = _grounding(look, scene, probe)
    return _scene_overlay(look, image, scene, probe, float(alpha)), info, steps


BOX_ASKED, BOX_PARTNER, BOX_OTHER = "#00a651", "#7b2cbf", "#5a5a5a"


def _grid_box(look: Any, scene: dict) -> list[float]:
    return list((look.result.extra or {}).get("crop_box") or [0, 0, *scene["size"]])


def _grounding(look: Any, scene: dict, probe: dict) -> dict:
    """The heatmap scored against every true box of the scene (grains.vlm.grounding)."""
    from grains.vlm.grounding import score_boxes

    scores = score_boxes(look.grid, _grid_box(look, scene), scene["boxes"])
    return {"object": probe["object"], "truth": probe["truth"],
            "partner": (scene.get("adversarial") or {}).get(probe["object"]),
            "scores": {name: s.to_dict() for name, s in scores.items()}}


def _scene_overlay(look: Any, image: str, scene: dict, probe: dict, alpha: float) -> Any:
    """The enlarged scene with the heatmap and the true boxes outlined: the asked object green, the planted partner
    of an asked absent B purple, the others light grey."""
    from grains.images import load_image
    from grains.viz.overlay import scene_overlay

    partner = (scene.get("adversarial") or {}).get(probe["object"])
    boxes = [(name, tuple(box), BOX_ASKED if name == probe["object"] else BOX_PARTNER if name == partner
              else BOX_OTHER) for name, box in scene["boxes"].items()]
    return scene_overlay(load_image(image), look.grid, _grid_box(look, scene), boxes, alpha=alpha)
