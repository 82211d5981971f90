"""The ``MISSING`` sentinel: "not given", so that ``None`` stays a legal value."""

from __future__ import annotations

import enum
from typing import Final, Literal


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
MissingType = Literal[_Missing.MISSING]
