"""The Hallucination tab's words for a generated scene: what the heatmap's numbers against the true boxes mean."""

from __future__ import annotations

from components.views.hallucination import grounding_note, scene_note_html


def score(mass, hit, area, chance, negative):
    return {"mass_inside": mass, "pointing_hit": hit, "area_share": area, "pointing_chance": chance,
            "negative_mass_inside": negative}


def test_present_object_note_puts_mass_beside_the_area_share_and_pointing_beside_chance():
    html = grounding_note({"object": "star", "truth": "yes", "partner": None,
                           "scores": {"star": score(0.6, True, 0.1, 0.25, 0.05)}})
    assert "<b>60%</b> of the red relevance lies inside the star's box, which covers 10% of the image" in html
    assert "(6.0x chance)" in html and "strongest patch is on the box" in html and "25% of the time" in html
    missed = grounding_note({"object": "star", "truth": "yes", "partner": None,
                             "scores": {"star": score(None, None, 0.1, 0.25, 0.9)}})
    assert "no red patch" in missed and "x chance" not in missed


def test_absent_object_note_names_the_planted_partner_and_each_box_share():
    html = grounding_note({"object": "moon", "truth": "no", "partner": "star",
                           "scores": {"star": score(0.1, False, 0.08, 0.2, 0.45), "circle": score(0.5, True, 0.05,
                                                                                                 0.1, 0.02)}})
    assert "false yes for the absent moon" in html
    assert "45% on the star (often seen with it in training), whose box covers 8% of the image" in html
    assert "2% on the circle, whose box covers 5%" in html
    assert grounding_note(None) == ""


def test_scene_note_lists_contents_and_the_adversarial_reason():
    html = scene_note_html({"seed": 1_200_000_007, "present": ["star", "circle"], "absent": ["moon", "cross"],
                            "adversarial": {"moon": "star"}})
    assert "Generated scene 1200000007" in html and "In it: star, circle. Not in it: moon, cross" in html
    assert "<b>moon</b> came with star in 90% of the biased model's training scenes" in html
