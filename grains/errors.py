"""Error types. Every error meant for a user carries one clear sentence as its message."""

from __future__ import annotations


class GrainsError(Exception):
    """Base class: a problem the user can act on, with a one-line message (no traceback needed).

    Subclasses: InputError (bad input), DataError (a dataset file or row), ModelLoadError, VectorError,
    ResourceError (out of memory), Cancelled and others in this module; catch GrainsError to handle them all.

    Args:
        message: one sentence saying what is wrong and what to do.

    Example:
        >>> try:
        ...     grains.load_model("no/such-model")
        ... except grains.GrainsError as exc:
        ...     print(f"error: {exc}")
    """


class InputError(GrainsError, ValueError):
    """Bad user input: empty or huge text, identical answers, k out of range, bad slider value."""


class DataError(GrainsError):
    """A dataset file or row is malformed. `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None, path: str | None = None):
        where = ""
        if path is not None:
            where += f"{path}"
        if line is not None:
            where += f"{':' if where else 'line '}{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.line = line
        self.path = path


class ModelLoadError(GrainsError):
    """A model could not be loaded (missing path, unreachable hub, unsupported architecture)."""


class VectorError(GrainsError):
    """A steering-vector file is corrupt, unsafe, or does not fit the loaded model."""


class ImageError(GrainsError):
    """An image is not an image, is truncated, or is too large."""


class ResourceError(GrainsError):
    """The computation ran out of memory or another resource."""


class Cancelled(GrainsError):
    """The user cancelled a long operation."""
