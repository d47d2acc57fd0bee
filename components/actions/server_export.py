"""Steer tab, "Use it in a server": the session's vector as a GGUF control vector at the chosen layer and strength,
with the llama.cpp command lines, the EasySteer request body and the measured rescale gap."""

from __future__ import annotations

from typing import Any

from components.inputs import session_steering
from components.model_cache import session_model
from components.session import Session, scratch_dir
from grains.serialize import to_jsonable


def export_for_server(session: Session, layer: Any, strength: Any) -> tuple[dict[str, Any], str]:
    """Write the GGUF for the session's vector at `layer` and `strength` and say how to serve it.

    Args:
        session: the caller's session (its vector and model).
        layer: the layer to export (never 0: llama.cpp cannot steer it).
        strength: the Studio strength, which is the engines' scale under the export's convention.

    Returns:
        ({"file_name", "layers", "strength", "model_hint", "llama_cpp", "easysteer_request", "rescale_gap",
        "warning"}, the .gguf path); no server path goes into the JSON (a client would take a "path" for a file).
    """
    from grains.adapters import text_config
    from grains.export import export_gguf
    from grains.serving import check_engine_model, easysteer_request, llama_cpp_commands, measure_rescale_gap

    lm = session_model(session)
    check_engine_model(lm)
    steering = session_steering(session, lm, layer, strength, True)
    config = text_config(lm.model.config)
    name = f"{session.model_name.rstrip('/').split('/')[-1]}_L{steering.layers[0]}.gguf".replace(":", "-")
    written = export_gguf(steering.vector, scratch_dir("gguf-") / name, layers=list(steering.layers),
                          strength=steering.strength, model_type=str(getattr(config, "model_type", "") or ""))
    gap = measure_rescale_gap(lm, steering)
    layers, value = written.layers, written.strength
    info = {k: v for k, v in written.to_dict().items() if k != "path"}
    name = written.path.name
    return to_jsonable({**info, "file_name": name, "llama_cpp": llama_cpp_commands(name, layers, value),
                        "easysteer_request": easysteer_request(name, layers, value),
                        "rescale_gap": gap.to_dict(), "warning": gap.sentence(value)}), str(written.path)
