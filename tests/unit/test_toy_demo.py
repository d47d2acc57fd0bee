"""The demo scene: held-out, a planted A present with its B absent and asked about, boxes matching the drawing."""

from __future__ import annotations

import numpy as np
import pytest

from grains.errors import InputError
from grains.vlm.check.photo import image_digest
from grains.vlm.toy.demo import DEMO_SEEDS, demo_scene
from grains.vlm.toy.scenes import PLANTED_PAIRS


@pytest.mark.parametrize("seed", [DEMO_SEEDS[0], DEMO_SEEDS[0] + 777])
def test_demo_scene_asks_about_a_planted_partner_that_is_absent(seed):
    demo = demo_scene(seed)
    b = demo.absent[0]
    assert demo.adversarial == {b: dict((bb, a) for a, bb in PLANTED_PAIRS)[b]}
    assert demo.adversarial[b] in demo.present and b not in demo.present
    assert len(demo.absent) == 2 and not set(demo.absent) & set(demo.present)
    assert demo.seed >= seed and demo.digest == image_digest(demo.scene.image)
    pixels = np.asarray(demo.scene.image)
    for obj in demo.scene.objects:  # the recorded box is tight around the object's drawn colour
        x0, y0, x1, y1 = demo.boxes[obj.kind]
        assert obj.mask[y0:y1, x0:x1].any() and (pixels[obj.mask] == obj.colour).all()
    assert demo_scene(seed).to_dict() == demo.to_dict()


def test_demo_scene_refuses_seeds_outside_its_held_out_range():
    with pytest.raises(InputError):
        demo_scene(5)
    assert DEMO_SEEDS[0] <= demo_scene().seed < DEMO_SEEDS[1]
