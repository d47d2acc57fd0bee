"""Sentiment of generated text with VADER, and the paired gain of steered over unsteered continuations.

VADER (Hutto & Gilbert 2014, package `vaderSentiment==3.3.2`) is a lexicon-and-rules scorer: its compound score
runs from -1 (most negative) to +1 (most positive), and text without sentiment words scores exactly 0. It is an
outside judge of a sentiment vector (it knows nothing about the model), used by scripts and tests; the core
library paths never import it. Score the continuations alone, without the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from grains.errors import InputError
from grains.stats import mcnemar_exact


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # optional dependency: say how to get it
        raise InputError("Sentiment scoring needs vaderSentiment: pip install vaderSentiment==3.3.2") from exc
    return SentimentIntensityAnalyzer()


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER's compound sentiment score of each text.

    Args:
        texts: the texts to score (for steering, the generated continuations without the prompt).

    Returns:
        One score per text in [-1, 1]: above 0 positive, below 0 negative, 0 for no sentiment words (or empty text).
    """
    if isinstance(texts, str):
        raise InputError("Pass a list of texts, not a single string.")
    analyzer = _analyzer()
    scores = []
    for text in texts:
        if not isinstance(text, str):
            raise InputError(f"Texts must be strings, got {type(text).__name__}.")
        scores.append(float(analyzer.polarity_scores(text)["compound"]))
    return scores


def sign_test(differences: Sequence[float]) -> float:
    """Exact two-sided sign test of "no gain": positives vs negatives at p = 0.5, ties dropped.

    Args:
        differences: paired differences (steered minus unsteered), one per prompt.

    Returns:
        The p-value; 1.0 when every difference is 0.
    """
    d = np.asarray(list(differences), dtype=np.float64)
    # The same binomial test as McNemar's on discordant pairs: "right only unsteered" = negative difference.
    return mcnemar_exact(list(d < 0), list(d > 0))


@dataclass(frozen=True)
class SentimentGain:
    """Paired VADER gain of steered over unsteered continuations of the same prompts."""

    n: int
    mean_unsteered: float
    mean_steered: float
    mean_gain: float
    ci_low: float
    ci_high: float
    positive: int
    negative: int
    ties: int
    p_value: float
    test: str = "exact two-sided sign test (ties dropped); 95% percentile bootstrap interval over prompts"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def sentiment_gain(unsteered: Sequence[str], steered: Sequence[str], n_resamples: int = 2000,
                   seed: int = 0) -> SentimentGain:
    """Mean VADER compound gain, steered minus unsteered, with a bootstrap interval and a sign test.

    Args:
        unsteered: continuations without steering, one per prompt.
        steered: continuations with steering, the same prompts in the same order.
        n_resamples: bootstrap resamples for the 95% interval.
        seed: bootstrap seed.

    Returns:
        A SentimentGain (mean gain, interval, counts of prompts that went up / down / stayed, sign-test p-value).
    """
    if isinstance(unsteered, str) or isinstance(steered, str):
        raise InputError("Pass lists of texts, not single strings.")
    if len(unsteered) != len(steered):
        raise InputError(f"Got {len(unsteered)} unsteered and {len(steered)} steered texts; they must pair up.")
    if not len(steered):
        raise InputError("There are no texts to score.")
    u = np.asarray(vader_compound(unsteered))
    s = np.asarray(vader_compound(steered))
    d = s - u
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return SentimentGain(
        n=int(d.size), mean_unsteered=float(u.mean()), mean_steered=float(s.mean()), mean_gain=float(d.mean()),
        ci_low=float(low), ci_high=float(high), positive=int((d > 0).sum()), negative=int((d < 0).sum()),
        ties=int((d == 0).sum()), p_value=sign_test(d),
    )
