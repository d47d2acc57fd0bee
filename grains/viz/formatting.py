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
