"""Argument checks shared by the step constructors and the backends.

Each error names where it happened (the step, or the backend method), the
argument and the value: a ``TypeError`` for a value of the wrong kind, a
``ValueError`` for one out of range.  They run when a step or a backend is
built, or when a public method is called, never in the step loop.
"""

from __future__ import annotations

import math
from typing import Any

_INFINITY = math.inf


def show(value: Any) -> str:
    """``repr(value)``, except for an int too large for a float: its size, not its digits."""
    if value.__class__ is int and value.bit_length() > 1024:
        try:
            digits = len(str(abs(value)))
        except ValueError:  # past the interpreter's int-to-str limit
            digits = int(math.log10(abs(value))) + 1
        sign = "a negative" if value < 0 else "an"
        return f"{sign} int of {digits} digits"
    return repr(value)


def _seconds(where: str, name: str, value: Any, kind: str) -> float:
    """``value`` as a float (an int too large for one is ±inf); ``TypeError`` if not a number."""
    if value.__class__ is float:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be {kind}, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        return _INFINITY if value > 0 else -_INFINITY


def check_delay(where: str, name: str, value: Any) -> float:
    """``value`` as a float, or an error naming ``where``, ``name`` and the value.

    A delay is a finite number of seconds >= 0: NaN, infinite, negative and
    too large for a float (``10**400``) are each a ``ValueError``.
    """
    seconds = _seconds(where, name, value, "a number of seconds")
    if not 0.0 <= seconds < _INFINITY:  # NaN fails both
        too_large = " (too large for a float)" if value.__class__ is int and value > 0 else ""
        raise ValueError(
            f"{where}: {name} must be a finite number of seconds >= 0, got {show(value)}{too_large}"
        )
    return seconds


def check_optional_delay(where: str, name: str, value: Any) -> float | None:
    return None if value is None else check_delay(where, name, value)


def check_limit(where: str, name: str, value: Any) -> float | None:
    """A time limit for a blocking call: seconds >= 0, or ``None`` for no limit (also for inf)."""
    if value is None:
        return None
    seconds = _seconds(where, name, value, "None or a number of seconds")
    if not seconds >= 0.0:  # NaN fails it
        raise ValueError(
            f"{where}: {name} must be None or a number of seconds >= 0, got {show(value)}"
        )
    return None if seconds == _INFINITY else seconds


def check_time(where: str, name: str, value: Any) -> float:
    """A point on a clock: any finite number of seconds."""
    seconds = _seconds(where, name, value, "a time in seconds")
    if not -_INFINITY < seconds < _INFINITY:
        raise ValueError(f"{where}: {name} must be a finite time, got {show(value)}")
    return seconds


def check_horizon(where: str, name: str, value: Any, now: float) -> float | None:
    """A time to run a clock until, not before ``now``; ``None`` (also for inf) for no end."""
    if value is None:
        return None
    seconds = _seconds(where, name, value, "None or a time in seconds")
    if seconds != seconds:
        raise ValueError(f"{where}: {name} must be None or a time in seconds, got {value!r}")
    if seconds < now:
        raise ValueError(f"{where}: {name} {show(value)} is before now ({now:g})")
    return None if seconds == _INFINITY else seconds


def check_count(where: str, name: str, value: Any, minimum: int, optional: bool = False) -> Any:
    """An int >= ``minimum`` (or ``None`` when ``optional``); bools are not counts."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "None or an int" if optional else "an int"
        raise TypeError(f"{where}: {name} must be {kind}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {show(value)}")
    return value


def check_choice(where: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{where}: unknown {name} {value!r}; expected one of {valid}")


def is_hashable(value: Any) -> bool:
    """Whether ``value`` can be a dict key."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def check_hashable(where: str, name: str, value: Any, what: str = "") -> None:
    """``TypeError`` naming the value unless it can be a dict key."""
    if not is_hashable(value):
        raise TypeError(f"{where}: {name} must be hashable{what}, got {value!r}")
