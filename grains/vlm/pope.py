"""POPE-style yes/no object probes: score "Yes" against "No" at the model's answer start, and the metrics POPE
reports (accuracy, precision, recall, F1 with "yes" as the positive class, and the yes ratio, which exposes a model
that just says "yes")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grains.errors import InputError

if TYPE_CHECKING:
    from grains.models import LoadedModel

YES, NO = "Yes", "No"
Steering = Callable[[], AbstractContextManager] | None


def _field(probe: Any, name: str, default: Any = None) -> Any:
    return probe.get(name, default) if isinstance(probe, dict) else getattr(probe, name, default)


def _truth(probe: Any) -> str:
    answer = str(_field(probe, "answer", "")).strip().lower()
    if answer not in ("yes", "no"):
        raise InputError(f"A probe's answer must be 'yes' or 'no', not {answer!r}.")
    return answer


def _image(probe: Any, image_root: str | Path | None) -> Any:
    image = _field(probe, "image")
    if isinstance(image, (str, Path)) and image_root is not None and not Path(image).is_absolute():
        image = Path(image_root) / image
    if isinstance(image, Path):
        image = str(image)
    if isinstance(image, str):
        from grains.vlm.adapters import as_pil_image

        return as_pil_image(image)
    return image


def score_yes_no(lm: LoadedModel, image: Any, question: str) -> tuple[float, float]:
    """(log P("Yes"), log P("No")) as the model's answer to `question` about `image`, under any active hooks.

    Args:
        lm: a loaded vision-language model.
        image: the image (path or PIL image).
        question: the question as the model sees it.

    Returns:
        (log P(yes), log P(no)) at the start of the answer.

    Example:
        >>> lp_yes, lp_no = score_yes_no(lm, "assets/images/coffee.jpg", "Is there a cup in the image?")
    """
    from grains.scoring import response_logprobs

    enc = lm.encode_prompt(question, image=image)
    (lp_yes, lp_no), _ = response_logprobs(lm, enc, [YES, NO])
    return lp_yes, lp_no


def probe_metrics(predictions: Sequence[str], truths: Sequence[str]) -> dict[str, Any]:
    """Confusion counts and POPE metrics for "yes"/"no" predictions against the true answers ("yes" is positive).

    Args:
        predictions: "yes" or "no" per probe.
        truths: the true answers.

    Returns:
        n, tp, fp, tn, fn, accuracy, precision, recall, f1 and yes_ratio.

    Example:
        >>> m = probe_metrics(["yes", "no", "yes", "no"], ["yes", "no", "no", "no"])
        >>> m["accuracy"], m["precision"], m["recall"]
        (0.75, 0.5, 1.0)
    """
    if len(predictions) != len(truths):
        raise InputError("There must be one prediction per probe.")
    if not predictions:
        raise InputError("There are no probes to score.")
    pairs = list(zip(predictions, truths))
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn, "accuracy": (tp + tn) / n, "precision": precision,
            "recall": recall, "f1": f1, "yes_ratio": (tp + fp) / n}


def evaluate_probes(lm: LoadedModel, probes: Sequence[Any], steering: Steering = None,
                    image_root: str | Path | None = None) -> dict[str, Any]:
    """Answer every probe (a YesNoProbe or a dict with image, question, answer) and compute POPE metrics.

    `steering` is a context-manager factory (e.g. `lambda: steer(lm, vector, layer, strength)`) entered around each
    probe; None scores the model as it is. Relative image paths are resolved against `image_root`.

    Args:
        lm: a loaded vision-language model.
        probes: YesNoProbes or dicts.
        steering: a context-manager factory, or None.
        image_root: where relative image paths resolve.

    Returns:
        The POPE metrics and one row per probe.

    Example:
        >>> evaluate_probes(lm, load_probes(BUILTIN_DATASETS["pope_style"]))["accuracy"]
    """
    if not probes:
        raise InputError("There are no probes to evaluate.")
    items = []
    lock = getattr(lm, "lock", None)
    with lock if lock is not None else nullcontext():
        for probe in probes:
            truth = _truth(probe)
            image = _image(probe, image_root)
            question = str(_field(probe, "question", ""))
            with (steering() if steering is not None else nullcontext()):
                lp_yes, lp_no = score_yes_no(lm, image, question)
            answer = "yes" if lp_yes > lp_no else "no"
            items.append({"question": question, "object": _field(probe, "object", ""), "truth": truth,
                          "answer": answer, "logp_yes": lp_yes, "logp_no": lp_no, "correct": answer == truth,
                          "margin": (lp_yes - lp_no) if truth == "yes" else (lp_no - lp_yes)})
    metrics = probe_metrics([i["answer"] for i in items], [i["truth"] for i in items])
    metrics["items"] = items
    return metrics


def probes_to_pairs(probes: Sequence[Any], image_root: str | Path | None = None) -> list[Any]:
    """Preference examples from probes: chosen = the true answer, rejected = the other, same question and image.

    Args:
        probes: YesNoProbes or dicts with image, question, answer (and object).
        image_root: where relative image paths resolve.

    Returns:
        PreferenceExamples (chosen "Yes" or "No").

    Example:
        >>> probes_to_pairs([{"image": "images/coffee.jpg", "question": "Is there a cup?", "answer": "yes"}],
        ...                 image_root="assets")[0].chosen
        'Yes'
    """
    from grains.data import PreferenceExample

    pairs = []
    for probe in probes:
        truth = _truth(probe)
        image = _field(probe, "image")
        if isinstance(image, (str, Path)):
            path = Path(image)
            if image_root is not None and not path.is_absolute():
                path = Path(image_root) / path
            image = str(path)
        chosen, rejected = (YES, NO) if truth == "yes" else (NO, YES)
        pairs.append(PreferenceExample(prompt=str(_field(probe, "question", "")), chosen=chosen, rejected=rejected,
                                       image=image, meta={"object": _field(probe, "object", ""), "truth": truth}))
    return pairs
