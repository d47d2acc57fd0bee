"""The bad-input corpus through the command line: a non-zero exit, exactly one stderr line starting "error:", no
traceback (and for the cases that must work: exit 0 with finite JSON).

Most cases run `grains.cli.main([...])` in-process (models are loaded once and reused); a handful run as real
`python -m grains` subprocesses, started together, to check the contract end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.robustness.bad_inputs import CASES, CASES_BY_ID, CHOSEN, PROMPT, REJECTED, Case, all_finite, resolve

ROOT = Path(__file__).resolve().parents[2]
CLI_CASES = [case for case in CASES if case.cli]


def argv_for(case: Case, folder: Path) -> list[str]:
    """The command line a user would type for this case."""
    args = resolve(case.args, folder)
    out = str(folder / "out.safetensors")
    surface = case.surface
    if surface == "attribute":
        return ["attribute", "--model", case.model, "--prompt", args["prompt"], "--chosen", args["chosen"],
                "--rejected", args["rejected"], "--steps", str(args["steps"]), "--json"]
    if surface == "select":
        return ["build", "--model", case.model, "--data", "truthfulqa", "--limit", "1", "--top-k", str(args["k"]),
                "--steps", "2", "--no-select", "--out", out, "--json"]
    if surface == "generate":
        vector = resolve({"v": _valid_file()}, folder)["v"]
        return ["generate", "--model", case.model, "--prompt", args["prompt"], "--vector", vector,
                "--layer", str(args["layer"]), "--strength", str(args["strength"]),
                "--max-new-tokens", str(args["max_new_tokens"]), "--json"]
    if surface == "image":
        return ["attribute", "--model", case.model, "--prompt", "Is there a cat in the image?", "--chosen", " Yes",
                "--rejected", " No", "--steps", "2", "--image", args["image"], "--json"]
    if surface == "dataset":
        return ["build", "--model", case.model, "--data", args["file"], "--steps", "2", "--no-select", "--out", out,
                "--json"]
    if surface == "vector":
        return ["generate", "--model", case.model, "--prompt", "Hello", "--vector", args["vector"],
                "--max-new-tokens", "2", "--json"]
    if surface == "model":
        return ["attribute", "--model", args["name"], "--prompt", PROMPT, "--chosen", CHOSEN, "--rejected", REJECTED,
                "--steps", "2", "--json"]
    raise AssertionError(surface)


def _valid_file() -> Any:
    from tests.robustness.bad_inputs import File

    return File("valid.safetensors")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_cli")


@pytest.fixture(scope="module")
def model_cache() -> dict[str, Any]:
    return {}


@pytest.fixture
def cached_models(monkeypatch, model_cache):
    """Preset models load once for the whole module; anything else goes through the real loader."""
    import grains.models
    from grains.presets import PRESETS

    real = grains.models.load_model

    def load(name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        if name in PRESETS and PRESETS[name].group == "test":
            if name not in model_cache:
                model_cache[name] = real(name, *args, **kwargs)
            return model_cache[name]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(grains.models, "load_model", load)


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    from grains.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_contract(case: Case, code: int, out: str, err: str) -> None:
    if case.ok:
        assert code == 0, err
        data = json.loads(out)
        assert all_finite(data["scores"]) and all_finite(data["plus_scores"]) and all_finite(data["minus_scores"])
        if case.surface == "image":
            assert data["image_scores"] and all_finite(data["image_scores"])
        return
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    fragment = case.cli_fragment or case.fragment
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert not out.strip(), "nothing on stdout for an error"


@pytest.mark.parametrize(
    "case",
    CLI_CASES,
    ids=[c.id for c in CLI_CASES],
)
def test_case_in_process(case, folder, cached_models, capsys, monkeypatch):
    for key, value in case.extra.get("env", {}).items():
        monkeypatch.setenv(key, value)
    code, out, err = run_in_process(argv_for(case, folder), capsys)
    check_contract(case, code, out, err)


# cases that fail before a model is built: each process costs only the import time (the in-process tests above
# cover the same contract for the rest)
SUBPROCESS_CASES = ["prompt-empty", "dataset-100mb"]


def test_real_subprocesses(folder):
    """A handful of cases as real `python -m grains` processes, started together to share the import time."""
    env_base = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    procs = []
    for case_id in SUBPROCESS_CASES:
        case = CASES_BY_ID[case_id]
        procs.append((case, subprocess.Popen([sys.executable, "-m", "grains", *argv_for(case, folder)], cwd=ROOT,
                                             env={**env_base, "HOME": str(folder)}, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    failures = []
    for case, proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            failures.append(f"{case.id}: timed out")
            continue
        try:
            check_contract(case, proc.returncode, out, err)
        except AssertionError as exc:
            failures.append(f"{case.id}: {exc}")
    assert not failures, failures
