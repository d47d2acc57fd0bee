"""Steer and re-check: build a vector from probes (the shipped POPE-style set, or a seeded stratified split of the
photo's own probes) and check the photo unsteered and steered on probes the vector never saw."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from grains.errors import InputError
from grains.vlm.check.checking import check_image, resolve_objects
from grains.vlm.check.objects import load_vocabulary, object_key
from grains.vlm.check.photo import image_digest, open_photo
from grains.vlm.check.probes import QUESTION_TEMPLATE, Probe, Progress, make_probes
from grains.vlm.check.report import CheckReport

if TYPE_CHECKING:
    from grains.models import LoadedModel

SHIPPED_PROBES = "pope_style"

def split_probes(probes: Sequence[Probe], build_share: float = 0.5, seed: int = 0) -> tuple[list[Probe], list[Probe]]:
    """(build, check): a seeded split of the user's probes, stratified by truth, that never shares a probe id.

    Each side gets at least one probe; with both truths present, the check side keeps at least one of each when
    there are two or more of that truth.

    Args:
        probes: the photo's probes (repeated ids count once).
        build_share: the share of each truth used to build (rounded down).
        seed: the shuffle's seed.

    Returns:
        (build probes, check probes).

    Example:
        >>> build, check = split_probes(make_probes(pil, ["cat", "sofa"], ["dog", "car"]))
        >>> len(build), len(check)
        (2, 2)
    """
    if not 0 < build_share < 1:
        raise InputError("The share of probes used to build must be between 0 and 1.")
    unique: dict[str, Probe] = {}
    for p in probes:
        unique.setdefault(p.id, p)
    if len(unique) < 2:
        raise InputError("Building from your own probes needs at least 2 (some to build from, the rest to check).")
    rng = random.Random(seed)
    build: list[Probe] = []
    check: list[Probe] = []
    for truth in ("yes", "no"):
        group = [p for p in unique.values() if p.truth == truth]
        rng.shuffle(group)
        if not group:
            continue
        n_build = int(len(group) * build_share)  # rounded down: the check side keeps the odd probe
        n_build = min(max(n_build, 1 if len(group) >= 2 else 0), len(group) - 1 if len(group) >= 2 else len(group))
        build += group[:n_build]
        check += group[n_build:]
    if not build:
        build.append(check.pop(0))
    if not check:
        check.append(build.pop())
    return build, check


def shipped_probes(exclude_digest: str | None = None, limit: int = 16, seed: int = 0) -> tuple[list[Probe], int]:
    """Up to `limit` probes from the shipped POPE-style set, balanced between yes and no, leaving out every probe
    about the photo with digest `exclude_digest` (so a check of a shipped photo never sees its own probes built in).

    Returns:
        (probes, how many shipped probes were left out because they ask about the checked photo).

    Args:
        exclude_digest: the checked photo's digest.
        limit: at most this many probes.
        seed: the shuffle's seed.

    Example:
        >>> probes, left_out = shipped_probes(limit=8)
        >>> sorted({p.truth for p in probes})
        ['no', 'yes']
    """
    from grains.data import load_builtin
    from grains.images import load_image

    _, rows = load_builtin(SHIPPED_PROBES)
    digests: dict[str, str] = {}
    pool: list[Probe] = []
    left_out = 0
    for row in rows:
        if row.image not in digests:
            digests[row.image] = image_digest(load_image(row.image))
        digest = digests[row.image]
        if digest == exclude_digest:
            left_out += 1
            continue
        name = row.object or row.question
        pool.append(Probe(object=name, truth=row.answer.strip().lower(), question=row.question,
                          id=f"{digest}:{object_key(name)}", image=row.image, source="shipped"))
    rng = random.Random(seed)
    yes = [p for p in pool if p.truth == "yes"]
    no = [p for p in pool if p.truth == "no"]
    rng.shuffle(yes)
    rng.shuffle(no)
    picked: list[Probe] = []
    while len(picked) < limit and (yes or no):
        for group in (yes, no):
            if group and len(picked) < limit:
                picked.append(group.pop())
    return picked, left_out


def _as_pairs(probes: Sequence[Probe]) -> list[Any]:
    from grains.vlm.pope import probes_to_pairs

    return probes_to_pairs([{"image": p.image, "question": p.question, "answer": p.truth, "object": p.object}
                            for p in probes])


def steer_and_recheck(lm: LoadedModel, image: Any, present: str | Sequence[str] | None = None,
                      absent: str | Sequence[str] | None = None, setting: str | None = None, source: str = "shipped",
                      build_share: float = 0.5, max_build: int = 16, method: str = "grains", k: int = 5,
                      steps: int = 8, layer: Any = None, strength: float | None = None, normalize: bool = True,
                      n_absent: int | None = None, seed: int = 0, template: str = QUESTION_TEMPLATE,
                      progress: Progress = None, should_stop: Callable[[], bool] | None = None) -> CheckReport:
    """Build a steering vector (chosen = the truthful answer, as in the paper's MMHal setting), then check the photo
    unsteered and steered on probes the vector never saw.

    Args:
        lm, image, present, absent, setting, n_absent, seed, template: as in `check_image`.
        source: "shipped" (the shipped POPE-style probes, minus any about this photo; every probe of the photo is
            checked) or "user" (the photo's own probes, split into build and check by `build_share`, stratified).
        max_build: at most this many shipped probes (balanced yes/no).
        method, k, steps: for `grains.build_vector` (layer and strength cross-validated on the build probes).
        layer, strength: override the vector's suggested layer and strength for the re-check.
        progress, should_stop: callbacks.

    Returns:
        A CheckReport with `split` (which probe ids built the vector, which were checked; they never overlap) and
        `build` (the vector's summary; the vector itself is `report.vector`).

    Example:
        >>> report = steer_and_recheck(lm, "photo.jpg", present=["cat", "sofa"], setting="adversarial")
        >>> report.split["note"]
    """
    from grains.build import build_vector

    if source not in ("shipped", "user"):
        raise InputError("Build the vector from 'shipped' probes or from the 'user' probes of this photo.")
    if isinstance(max_build, bool) or not isinstance(max_build, int) or not 2 <= max_build <= 64:
        raise InputError("The number of shipped probes to build from must be a whole number from 2 to 64.")
    pil, info = open_photo(lm, image)
    vocab = load_vocabulary()
    present_list, absent_list, proposal = resolve_objects(present, absent, setting, n_absent, seed, vocab)
    probes = make_probes(pil, present_list, absent_list, template, info["digest"], vocab)
    if source == "user":
        build_probes, check_probes = split_probes(probes, build_share, seed)
        order = {p.id: i for i, p in enumerate(probes)}
        build_probes.sort(key=lambda p: order[p.id])
        check_probes.sort(key=lambda p: order[p.id])
        left_out = 0
    else:
        build_probes, left_out = shipped_probes(info["digest"], max_build, seed)
        check_probes = list(probes)
    build_ids = [p.id for p in build_probes]
    check_ids = [p.id for p in check_probes]
    if set(build_ids) & set(check_ids):  # a guard: the split functions above make this impossible
        raise RuntimeError("The build and check probes overlap.")
    sub = (lambda f, m: progress(0.7 * f, f"building: {m}")) if progress else None
    built = build_vector(lm, _as_pairs(build_probes), method=method, k=k, steps=steps, folds=3,
                         select=len(build_probes) >= 2, progress=sub, should_stop=should_stop, seed=seed)
    sub = (lambda f, m: progress(0.7 + 0.3 * f, m)) if progress else None
    report = check_image(lm, pil, present_list, absent_list, None, built.vector, layer, strength, normalize,
                         seed=seed, template=template, only=check_ids, progress=sub)
    report.image = info
    report.proposal = proposal
    where = ("the shipped POPE-style probes" + (f" ({left_out} about this same photo left out)" if left_out else "")
             if source == "shipped" else "this photo's own probes")
    report.split = {
        "source": source, "build_ids": build_ids, "check_ids": check_ids,
        "build_objects": [f"{p.object} ({p.truth})" for p in build_probes],
        "check_objects": [f"{p.object} ({p.truth})" for p in check_probes],
        "n_build": len(build_ids), "n_check": len(check_ids), "left_out_same_photo": left_out,
        "note": (f"The vector was built from {len(build_ids)} probes ({where}) and checked on {len(check_ids)} other "
                 "probes: no probe is in both."),
    }
    report.build = built.summary()
    report.vector = built.vector
    if strength is None and built.vector.default_strength == 0:
        report.notes.insert(0, "Cross-validation on the build probes found no strength that beats 0, so the re-check "
                               "steers at strength 0 (the unsteered model). Give a strength to try one anyway.")
    return report
