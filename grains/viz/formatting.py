"""Number formatting shared by every report, card and note (library views and the app's components alike)."""

from __future__ import annotations

from typing import Any


def percent(value: Any, digits: int = 0, missing: str = "n/a") -> str:
    """A share as a percentage, or `missing` when there is no number.

    Args:
        value: a share (0.25 is 25%), a numeric string, None or anything else.
        digits: decimals after the point.
        missing: the text for a value that is not a number (None, "", "abc").

    Returns:
        e.g. "25%" or "25.0%"; `missing` for a non-number.

    Example:
        >>> percent(0.254, 1), percent(None)
        ('25.4%', 'n/a')
    """
    try:
        return f"{float(value):.{digits}%}"
    except (TypeError, ValueError):
        return missing


def phase_times(timings: dict[str, float], digits: int = 0, floor: float = 0.0, sep: str = " · ") -> str:
    """Seconds per phase, largest first, e.g. "cross-validation 44 s · attribution 10 s".

    Args:
        timings: seconds per phase name.
        digits: decimals of the seconds.
        floor: phases under this many seconds are left out.
        sep: the separator between phases.

    Returns:
        The phases as one line ("" when none is left).

    Example:
        >>> phase_times({"attribution": 9.6, "cross-validation": 44.2, "budget": 0.01}, floor=0.05)
        'cross-validation 44 s · attribution 10 s'
    """
    kept = sorted(((k, v) for k, v in timings.items() if v >= floor), key=lambda kv: -kv[1])
    return sep.join(f"{k} {v:.{digits}f} s" for k, v in kept)
