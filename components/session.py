"""One session's state (`Session`, kept in gr.State and per browser in components.session_store): its model name,
vector, last attribution and token overrides; the app's paths and defaults; the per-process scratch folder for
downloads; one sentence for a failure.

Nothing here imports gradio: handlers in the panels turn `GrainsError`s into `gr.Error`s.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.model_cache import DEFAULT_VECTOR_PATH, default_vector_for, default_vector_label
from grains.errors import GrainsError

if TYPE_CHECKING:
    from grains.attribution import AttributionResult
    from grains.encoding import EncodedExample
    from grains.vectors import SteeringVector

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
IMAGES_DIR = ASSETS / "images"
MAX_UPLOAD = "25mb"
# The first screen tells one story with the shipped sentiment vector: a sentiment pair to attribute (raw prompt,
# positive vs negative continuation; sentiment_pairs row 167, after the rows the default vector was built from)
# and a neutral prompt to continue with and without the vector (neutral_prompts_heldout.jsonl). The prompt is an
# illustration, picked because its unsteered continuation turns negative; what measures the vector is its held-out
# evaluation over all 40 of those prompts (stored in the vector, shown in the recipe box).
DEFAULT_EXAMPLE = {"prompt": "Honestly, the pizza from that new delivery app",
                   "chosen": " arrived hot and tasted fantastic.", "rejected": " arrived cold and tasted dreadful."}
DEFAULT_COMPARE_PROMPT = "For lunch I had a sandwich, and"


def no_overrides() -> dict[str, list[int]]:
    """Empty token overrides: nothing forced positive or negative, nothing dropped."""
    return {"force_positive": [], "force_negative": [], "drop": []}


@dataclass
class Session:
    """One browser tab's (or API client's) state: its model name, vector, last attribution, token overrides.

    `last_build`, `last_generation` and `last_eval` record the settings of the last build, side-by-side generation
    and evaluation; Show code reads them to reproduce those runs.
    """

    model_name: str
    vector: SteeringVector | None = None
    vector_label: str = ""
    vector_path: str | None = None  # a saved copy, for download
    allow_other_model: bool = False  # the user ticked "allow a vector from another model" when loading this vector
    attribution: AttributionResult | None = None
    example: EncodedExample | None = None  # the last attribution's example (for top-k eligibility)
    inputs: dict[str, Any] = field(default_factory=dict)  # prompt, chosen, rejected, image (path), steps, ...
    overrides: dict[str, list[int]] = field(default_factory=no_overrides)
    cancel: bool = False  # set by the Cancel button while a build is pending or running
    build_pending: bool = False
    build_started: bool = False  # the pending build has left the queue and is running
    build_status: str = ""  # the last build's closing status (HTML), for a page that missed the build's own reply
    last_build: dict[str, Any] | None = None  # source, dataset, rows, offset, method, k, steps, select, model, ...
    last_generation: dict[str, Any] | None = None  # prompt, max_new_tokens, do_sample, seed, stop, prompt_format, ...
    last_eval: dict[str, Any] | None = None  # dataset, rows, offset, steered, layer, strength, normalize, ...
    store_key: str = ""  # where components.session_store keeps this session for its browser ("" : not kept)
    ui_values: dict[int, Any] = field(default_factory=dict)  # last value of each kept field, by component id

    def clear_overrides(self) -> None:
        """Back to automatic top-k: no token forced or dropped."""
        self.overrides = no_overrides()

    def set_vector(self, vector: SteeringVector | None, label: str, path: str | None = None,
                   allow_other_model: bool = False) -> None:
        """Make `vector` the session's vector.

        Args:
            vector: the vector (None: no vector).
            label: what the vector card calls it.
            path: a saved copy, for download.
            allow_other_model: it was built for another model and the user allowed that.
        """
        self.vector, self.vector_label, self.vector_path = vector, label, path
        self.allow_other_model = bool(allow_other_model)


def new_session(model_name: str) -> Session:
    """A fresh session, with the shipped default vector when it fits the model.

    Args:
        model_name: the session's model.

    Returns:
        The session.
    """
    session = Session(model_name=model_name)
    vector = default_vector_for(model_name)
    if vector is not None:
        session.set_vector(vector, default_vector_label(vector), str(DEFAULT_VECTOR_PATH))
    return session


_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A fresh folder for a file the user downloads (vectors, CSVs) under one per-process temp dir, removed at exit
    (Gradio copies returned files into its own cache).

    Args:
        prefix: the folder name's prefix.

    Returns:
        The new folder.
    """
    if not _SCRATCH:
        root = Path(tempfile.mkdtemp(prefix="grains-studio-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SCRATCH.append(root)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH[0]))


def user_message(exc: BaseException) -> str:
    """One sentence for the user: the GrainsError's message, or a short generic line for anything else.

    Args:
        exc: the failure.

    Returns:
        The sentence (at most 300 characters for an unexpected error).
    """
    if isinstance(exc, GrainsError) or getattr(exc, "user_facing", False):  # e.g. the server's time limit
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Unexpected {type(exc).__name__}: {first}"[:300]
