"""Check one photo for object hallucinations, POPE style: ask "Is there a {object} in the image?" about objects that
are in it and objects that are not, and report what the field reports (per probe the answer, P(yes) and whether it is
a hallucination; accuracy, precision, recall, F1 and the yes ratio), unsteered and steered side by side with the exact
McNemar test; show where the model looked for one probe; build a vector and re-check on probes it never saw.

    import grains
    lm = grains.load_model("HuggingFaceTB/SmolVLM-256M-Instruct")
    report = grains.check_image(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial")
    report.show()                                   # or report.to_json(), or display it in a notebook
    look = where_the_model_looked(lm, "photo.jpg", report.unsteered.answers[2].probe)
    rechecked = steer_and_recheck(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial", source="shipped")

Absent objects are proposed from a shipped vocabulary (the 80 COCO class names) in POPE's three settings: random,
popular (the most frequent objects) and adversarial (objects that often appear with the present ones). The popularity
order and the co-occurrence table in `assets/data/object_vocabulary.json` were written for this project, not measured
on COCO. A proposal never contains an object listed as present (compared without case, plural or listed synonyms).

Layout: `objects` (names, vocabulary, proposals), `photo` (the checked image and its digest), `probes` (questions,
scoring, McNemar), `report` (CheckReport and its rendering), `checking` (check_image), `heatmap`
(where_the_model_looked), `recheck` (steer_and_recheck).
"""

from __future__ import annotations

from grains.vlm.check.checking import check_image, resolve_objects
from grains.vlm.check.heatmap import ProbeHeatmap, where_the_model_looked
from grains.vlm.check.objects import (
    MAX_OBJECT_CHARS,
    MAX_OBJECTS,
    SETTINGS,
    VOCABULARY_PATH,
    Proposal,
    Setting,
    Vocabulary,
    load_vocabulary,
    object_key,
    parse_objects,
    propose_absent,
)
from grains.vlm.check.photo import image_digest, open_photo
from grains.vlm.check.probes import (
    QUESTION_TEMPLATE,
    CheckRun,
    Probe,
    ProbeAnswer,
    Progress,
    check_disjoint,
    compare_runs,
    make_probes,
    min_discordant_to_reject,
    run_probes,
    side_effects_of,
    steering_factory,
)
from grains.vlm.check.recheck import SHIPPED_PROBES, shipped_probes, split_probes, steer_and_recheck
from grains.vlm.check.report import METRIC_ROWS, CheckReport, json_safe

__all__ = ["MAX_OBJECTS", "MAX_OBJECT_CHARS", "METRIC_ROWS", "QUESTION_TEMPLATE", "SETTINGS", "SHIPPED_PROBES",
           "VOCABULARY_PATH", "CheckReport", "CheckRun", "Probe", "ProbeAnswer", "ProbeHeatmap", "Progress",
           "Proposal", "Setting", "Vocabulary", "check_disjoint", "check_image", "compare_runs", "image_digest",
           "json_safe", "load_vocabulary", "make_probes", "min_discordant_to_reject", "object_key", "open_photo",
           "parse_objects", "propose_absent", "resolve_objects", "run_probes", "shipped_probes", "side_effects_of",
           "split_probes", "steer_and_recheck", "steering_factory", "where_the_model_looked"]
