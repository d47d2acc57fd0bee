"""The house's shape: no module of the library or the UI over 400 lines, and no benchmark code in the library."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400


def test_no_module_of_grains_or_components_is_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for package in ("grains", "components") for p in (ROOT / package).rglob("*.py")}
    assert len(sizes) > 20
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_benchmark_harness_lives_outside_the_library():
    assert not list((ROOT / "grains").glob("bench*.py"))
    assert (ROOT / "benchmarks").is_dir()
