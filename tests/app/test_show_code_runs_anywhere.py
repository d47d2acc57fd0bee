"""Show code's script runs from a folder outside the checkout (the package importable, the session's vector and photo
saved beside it by the download bundle), covers "attribute with the vector on" and the hallucination check, and never
mixes an earlier model's build into a script for the model loaded now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from components.actions.model import switch_model
from components.actions.steering import load_vector_file
from components.code_bundle import write_bundle
from components.model_cache import MODELS
from components.session import Session
from components.show_code import python_code
from tests.factories import random_vector

ROOT = Path(__file__).resolve().parents[2]
PROMPT, CHOSEN, REJECTED = "The food was", " great.", " awful."


def cfg_for(**extra: object) -> dict:
    return {"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED, "steps": 2, "k": 2, "layer": 1,
            "strength": 0.5, "normalize": True, "gen_prompt": "Hello", "max_new_tokens": 4, "eval_dataset":
            "sentiment_pairs", "eval_rows": 2, "eval_offset": 0, "build_source": "example", **extra}


def test_the_script_runs_from_a_folder_outside_the_checkout(tmp_path):
    session = Session(model_name="tiny-random-llama")
    built = tmp_path / "from_elsewhere.safetensors"
    random_vector(MODELS.get("tiny-random-llama"), layer=1).save(built)
    load_vector_file(session, str(built))  # a vector loaded from a file the script's folder does not have
    cfg = cfg_for()
    script = python_code(cfg, session)
    assert "HERE / 'from_elsewhere.safetensors'" in script
    assert "steering=steering)" in script and "attribution_difference" in script  # attribute with the vector on
    outside = tmp_path / "somewhere" / "else"
    files = write_bundle(outside, script, session, cfg)
    assert {p.name for p in files} >= {"grains_session.py", "from_elsewhere.safetensors"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # the package installed, not the cwd
    run = subprocess.run([sys.executable, str(files[0])], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "with the vector on, f moved by" in run.stdout and "steered:" in run.stdout


def test_a_vlm_script_leaves_out_the_earlier_build_and_checks_the_photo():
    session = Session(model_name="tiny-random-llama")
    session.last_build = {"source": "dataset", "dataset": "truthfulqa", "rows": 30, "model": "tiny-random-llama",
                          "method": "caa", "file_name": "x.safetensors"}
    session.last_generation = {"model": "tiny-random-llama", "prompt": "Text-only prompt", "max_new_tokens": 9}
    switch_model(session, "tiny-random-llava")
    last = {"inputs": {"image": str(ROOT / "assets" / "images" / "astronaut.jpg"), "present": "person",
                       "absent": "dog", "setting": None, "n_absent": None, "model": "tiny-random-llava"}}
    script = python_code(cfg_for(hallucination_last=last, build_source="dataset"), session)
    assert "tiny-random-llama" not in script and "'caa'" not in script and "Text-only prompt" not in script
    assert "check_image(lm, HERE / 'check_photo.jpg', present='person', absent='dog')" in script
