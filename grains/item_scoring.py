"""Evaluation rows scored many at a time: TruthfulQA questions and preference pairs on a text model.

Every distinct answer of every row becomes one (prompt ids, answer ids) row of a `grains.prefix_cache.CachedRows`
(an answer listed twice for one question, as TruthfulQA lists most MC1 choices again among its MC2 answers, is
scored once: 1342 distinct of 2186 listed in the shipped 200 questions), so many questions share each forward pass
(aligned on the end of their prompts, logits only at the answers' positions) and a steered pass reuses the
unsteered pass's hidden states below the steered layer. The per-item results are those of `grains.evaluation`'s
row-by-row scorers (tested to 1e-5 in fp32): MC1/MC2 as lm-eval defines them, pair margins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from grains.errors import Cancelled, InputError
from grains.prefix_cache import CachedRows, supports
from grains.prompts import encode_response

if TYPE_CHECKING:
    from grains.models import LoadedModel
    from grains.steering import Steering


def mc_result(q: Any, sums: Sequence[float], counts: Sequence[int], length_normalize: bool) -> dict[str, Any]:
    """One TruthfulQA question's result from its answers' log-probability sums (MC1 choices, then MC2 answers).

    Args:
        q: the MCQuestion.
        sums: log P(answer | prompt) per answer.
        counts: each answer's token count.
        length_normalize: `correct`/`margin` from per-token means, and the length-normalised MC1/MC2 added.

    Returns:
        {"correct", "margin", "answer", "mc1", "mc2", "mc2_source"[, "mc1_length_normalized", ...]}.
    """
    from grains import truthfulqa_metrics as tqm

    k = len(q.choices)
    scores = [s / c if length_normalize else s for s, c in zip(sums, counts)]
    mc1 = scores[:k]
    best_other = max(s for i, s in enumerate(mc1) if i != q.label)
    pick = max(range(k), key=lambda i: mc1[i])
    item = {"correct": pick == q.label, "margin": mc1[q.label] - best_other, "answer": q.choices[pick],
            "mc1": tqm.mc1(list(sums[:k]), q.label), "mc2": tqm.mc2(list(sums[k:]), q.mc2_labels),
            "mc2_source": q.mc2_source}
    if length_normalize:
        item["mc1_length_normalized"] = tqm.mc1_length_normalized(list(sums[:k]), list(counts[:k]), q.label)
        item["mc2_length_normalized"] = tqm.mc2_length_normalized(list(sums[k:]), list(counts[k:]), q.mc2_labels)
    return item


def pair_result(ex: Any, sums: Sequence[float], counts: Sequence[int], length_normalize: bool) -> dict[str, Any]:
    """One preference pair's result from the chosen and rejected answers' log-probability sums."""
    if length_normalize:
        return margin_result(ex, sums[0] / counts[0] - sums[1] / counts[1])
    return margin_result(ex, sums[0] - sums[1])


def margin_result(ex: Any, margin: float) -> dict[str, Any]:
    """One preference pair's result from its margin, log p(chosen) - log p(rejected)."""
    return {"correct": margin > 0, "margin": margin, "answer": (ex.chosen if margin > 0 else ex.rejected).strip()}


def answers_of(kind: str, row: Any) -> list[str]:
    """The answers a row scores: MC1 choices then MC2 answers (TruthfulQA), or chosen then rejected (pairs)."""
    if kind == "truthfulqa":
        return list(row.choices) + list(row.mc2_choices)
    if row.chosen.strip() == row.rejected.strip():
        raise InputError("The chosen and rejected answers are identical.")
    return [row.chosen, row.rejected]


def batchable(lm: LoadedModel, rows: Sequence[Any], kind: str) -> bool:
    """Whether rows can be scored many at a time: TruthfulQA or pairs, a text model, no images."""
    return (kind in ("truthfulqa", "pairs") and supports(lm)
            and all(getattr(r, "image", None) is None for r in rows))


class BatchedItems:
    """Evaluation rows encoded once, scored unsteered once, and steered from the kept hidden states.

    Args:
        lm: a text model (see `batchable`).
        rows: TruthfulQA questions or preference pairs.
        kind: "truthfulqa" or "pairs".
        layers: layers whose hidden states the unsteered pass keeps (the steered layers to come).

    Example:
        >>> items = BatchedItems(lm, questions, "truthfulqa", layers=[9])
        >>> unsteered, steered = items.score(None), items.score(steering)
    """

    def __init__(self, lm: LoadedModel, rows: Sequence[Any], kind: str, layers: Sequence[int] = ()):
        self.rows, self.kind = list(rows), kind
        cache_rows: list[tuple[list[int], list[int]]] = []
        self.answer_rows: list[list[int]] = []  # per row: the cache row of each listed answer, in order
        for row in self.rows:
            enc = lm.encode_prompt(row.prompt)
            seen: dict[tuple[int, ...], int] = {}
            listed = []
            for answer in answers_of(kind, row):
                ids = tuple(encode_response(lm.tokenizer, answer, lm.prompt_style, after=enc.text).ids)
                if ids not in seen:  # the same answer again has the same log-probability: scored once
                    seen[ids] = len(cache_rows)
                    cache_rows.append((enc.ids, list(ids)))
                listed.append(seen[ids])
            self.answer_rows.append(listed)
        self.cache = CachedRows(lm, cache_rows, layers=layers)
        # pairs laid out chosen, rejected (rows 2j, 2j + 1): a steered margin reads only what the two read apart
        self.margins_only = kind == "pairs" and all(listed == [2 * j, 2 * j + 1]
                                                    for j, listed in enumerate(self.answer_rows))
        self.lm = lm

    def score(self, steering: Steering | None, length_normalize: bool = False,
              progress: Callable[[float, str], None] | None = None, label: str = "",
              should_stop: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
        """Every row's result, unsteered (`steering` None) or steered.

        Args:
            steering: the setting, or None.
            length_normalize: as in grains.evaluation.
            progress: called with (fraction of rows done, message) after each pass.
            label: the message's prefix.
            should_stop: polled between passes; True raises Cancelled.

        Returns:
            One result dict per row, as grains.evaluation's row-by-row scorers give.
        """
        n = len(self.rows)

        def tick(fraction: float) -> None:
            if progress:
                progress(fraction, f"{label}{round(fraction * n)}/{n}")

        try:
            with self.lm.lock:
                if self.margins_only and not length_normalize:
                    margins = self.cache.margins(steering, should_stop=should_stop, progress=tick)
                    return [margin_result(row, margin) for row, margin in zip(self.rows, margins)]
                sums = self.cache.logprob_sums(steering, should_stop=should_stop, progress=tick)
        except Cancelled as exc:
            raise Cancelled(f"Stopped by the user ({label.strip() or 'scoring'}).") from exc
        build = mc_result if self.kind == "truthfulqa" else pair_result
        out = []
        for row, answer_rows in zip(self.rows, self.answer_rows):
            counts = [len(self.cache.rows[i][1]) for i in answer_rows]
            out.append(build(row, [sums[i] for i in answer_rows], counts, length_normalize))
        return out
