"""The Show code download: the generated script in a zip with the files it reads from its own folder (the session's
vector with its JSON sidecar, the attributed photo, the photo of the last hallucination check), so that it runs
from any folder where the package is installed."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

from components.session import Session, scratch_dir
from components.show_code import photo_file, vector_file

SCRIPT_NAME = "grains_session.py"


def write_bundle(folder: Path, script: str, session: Session | None, cfg: dict[str, Any]) -> list[Path]:
    """Write the script and the files it reads into `folder`.

    Args:
        folder: where to write (created if missing).
        script: the Python script (components.show_code.python_code).
        session: the session whose vector is saved.
        cfg: the Show code values (the attributed photo, the last hallucination check).

    Returns:
        The files written, the script first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / SCRIPT_NAME]
    written[0].write_text(script, encoding="utf-8")
    name = vector_file(session)
    if name is not None and session is not None and session.vector is not None:
        target = folder / name
        session.vector.save(target)
        written += [p for p in (target, target.with_suffix(".json")) if p.exists()]
    last = (cfg.get("hallucination_last") or {}).get("inputs") or {}
    for source, stem in ((cfg.get("image"), "photo"), (last.get("image"), "check_photo")):
        if source and Path(str(source)).is_file():
            written.append(Path(shutil.copy(str(source), folder / photo_file(source, stem))))
    return written


def bundle_zip(script: str, session: Session | None, cfg: dict[str, Any]) -> str:
    """The script and its files as one zip for download (in the app's scratch folder).

    Returns:
        The zip's path.
    """
    folder = scratch_dir("code-")
    files = write_bundle(folder / "grains_session", script, session, cfg)
    archive = folder / "grains_session.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, f"grains_session/{path.name}")
    return str(archive)


def connect_download(python: Any, inputs: list[Any], names: list[str]) -> None:
    """A download button under the script, refreshed whenever the script is (a zip of the script and its files).

    Args:
        python: the gr.Code holding the script.
        inputs: [state, *the Show code sources].
        names: the FIELDS names of the sources, in order.
    """
    import gradio as gr

    download = gr.DownloadButton("Download the script with its vector and photos (.zip)", size="sm",
                                 elem_id="grains-code-bundle", interactive=False)

    def bundle(script: str, session: Session, *values: Any) -> Any:
        if not script:
            return gr.update(value=None, interactive=False)
        return gr.update(value=bundle_zip(script, session, dict(zip(names, values))), interactive=True)

    python.change(bundle, inputs=[python, *inputs], outputs=download, api_visibility="private",
                  show_progress="hidden")
