"""Argument checks shared by the step constructors: each error names the step and the value."""

from __future__ import annotations

import math
from typing import Any


def check_delay(where: str, name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``where`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{where}: {name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def check_optional_delay(where: str, name: str, value: Any) -> float | None:
    return None if value is None else check_delay(where, name, value)


def check_choice(where: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{where}: unknown {name} {value!r}; expected one of {valid}")
