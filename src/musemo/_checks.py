"""Small checks shared by the public functions; each error names the parameter and value."""

from __future__ import annotations

import numpy as np

from .errors import ParameterError


def is_number(x) -> bool:
    """A finite real number (not a bool, not a string)."""
    return (
        isinstance(x, (int, float, np.integer, np.floating))
        and not isinstance(x, (bool, np.bool_))
        and bool(np.isfinite(x))
    )


def check_int(name: str, value, minimum: int, *, what: str = "an integer") -> int:
    """``value`` as an int, or a ``ParameterError`` naming ``name``: Python and numpy
    integers pass, bools, floats and strings do not."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ParameterError(f"{name}={value!r}: must be {what} >= {minimum}")
    return int(value)


def check_threads(threads) -> int:
    return check_int("threads", threads, 1)


def check_sr(sr) -> int:
    """A sample rate in Hz: a positive integer."""
    return check_int("sr", sr, 1, what="an integer sample rate in Hz")
