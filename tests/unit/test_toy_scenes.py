"""Generated scenes (grains.vlm.toy): determinism, boxes and masks against the drawn pixels, the planted rule, probe
settings, and the `scenes` command's files read back by the library's loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from grains.cli import main
from grains.data import load_any
from grains.errors import InputError
from grains.vlm.toy.probes import adversarial_order, scene_probes, setting_rows
from grains.vlm.toy.scenes import BIASED, PLANTED_PAIRS, UNBIASED, make_scene, scene_kinds
from grains.vlm.toy.shapes import KINDS

SEEDS = range(40)


def test_same_seed_same_pixels_other_seed_other_scene() -> None:
    a, b, c = make_scene(11, BIASED), make_scene(11, BIASED), make_scene(12, BIASED)
    assert a.kinds == b.kinds and [o.box for o in a.objects] == [o.box for o in b.objects]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_boxes_inside_image_and_masks_are_the_drawn_pixels() -> None:
    sizes = []
    for seed in SEEDS:
        scene = make_scene(seed)
        pixels = np.asarray(scene.image)
        assert 1 <= len(scene.objects) <= 4 and len(set(scene.kinds)) == len(scene.kinds)
        covered = np.zeros(pixels.shape[:2], dtype=bool)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            ys, xs = np.nonzero(obj.mask)
            assert obj.area > 0 and xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
            assert (pixels[obj.mask] == np.array(obj.colour)).all()  # every visible pixel has the object's colour
            assert not (covered & obj.mask).any()  # visible masks never overlap
            covered |= obj.mask
            sizes.append(x1 - x0)
        outside = pixels[~covered]
        for obj in scene.objects:  # no background pixel is painted in an object's colour
            assert not (outside == np.array(obj.colour)).all(axis=-1).any()
        labels = scene.label_map()
        assert set(np.unique(labels)) == {0, *range(1, len(scene.objects) + 1)}
    assert max(sizes) - min(sizes) >= 8  # sizes vary


def test_planted_rule_holds_in_the_biased_distribution_only() -> None:
    seeds = range(3000)
    for kinds_of, low, high in ((lambda s: scene_kinds(s, BIASED), 0.83, 0.95),
                                (lambda s: scene_kinds(s, UNBIASED), 0.15, 0.45)):
        scenes = [kinds_of(s) for s in seeds]
        for a, b in PLANTED_PAIRS:
            with_a = [k for k in scenes if a in k]
            share = sum(b in k for k in with_a) / len(with_a)
            assert low <= share <= high, (a, b, share)


def test_probe_settings_are_right() -> None:
    scene = next(s for s in (make_scene(seed) for seed in range(200)) if "star" in s.kinds and "moon" not in s.kinds)
    rows = scene_probes(scene, "images/x.png")
    present = [r for r in rows if r["setting"] == "present"]
    assert sorted(r["object"] for r in present) == sorted(scene.kinds)
    assert all(r["answer"] == "yes" and r["box"] is not None for r in present)
    for setting in ("random", "popular", "adversarial"):
        absent = [r for r in rows if r["setting"] == setting]
        assert len(absent) == min(len(scene.kinds), len(KINDS) - len(scene.kinds))
        assert all(r["answer"] == "no" and r["object"] not in scene.kinds and r["box"] is None for r in absent)
        assert len(setting_rows(rows, setting)) == len(present) + len(absent)
    adversarial = [r["object"] for r in rows if r["setting"] == "adversarial"]
    assert adversarial[0] == "moon"  # the planted partner of a present star comes first
    assert adversarial_order(["heart"])[0] == "ring"
    assert all(r["boxes"] == [{"kind": o.kind, "box": list(o.box)} for o in scene.objects] for r in rows)


def test_scenes_command_writes_files_the_loaders_read(tmp_path, capsys) -> None:
    assert main(["scenes", "--seed", "1000000000", "--n", "6", "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenes"] == 6 and summary["per_setting"]["present"] >= 6
    kind, probes = load_any(tmp_path / "probes.jsonl")
    assert kind == "probes" and len(probes) == summary["probes"]
    rows = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    scenes = [json.loads(line) for line in (tmp_path / "scenes.jsonl").read_text().splitlines()]
    for probe, row in zip(probes, rows):
        assert probe.answer == row["answer"] and probe.object == row["object"]
    scene = make_scene(1000000000)
    assert np.array_equal(np.asarray(Image.open(probes[0].image)), np.asarray(scene.image))
    assert np.array_equal(np.asarray(Image.open(tmp_path / scenes[0]["mask"])), scene.label_map())
    assert scenes[0]["objects"][0]["box"] == list(scene.objects[0].box)


@pytest.mark.parametrize("argv", [["--n", "0"], ["--seed", "-3"], ["--seed", "x"]])
def test_scenes_command_bad_input_is_one_line(tmp_path, capsys, argv) -> None:
    try:
        code = main(["scenes", "--out", str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse's rejections exit from inside the parser
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "\n" not in err


def test_bad_seed_raises_input_error() -> None:
    with pytest.raises(InputError):
        make_scene(-1)
