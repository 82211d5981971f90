"""The values a ``run`` function or an ``each`` callback returns to steer its step."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._missing import MISSING, MissingType
from ._values import value

S = TypeVar("S")


@value
class Ok(Generic[S]):
    """Continue with ``state`` as the flow's new state."""

    state: S


@value
class Retry(Generic[S]):
    """Try the ``run`` again, first replacing the state with ``new_state`` when given."""

    new_state: S | MissingType = MISSING


@value
class Error:
    """Fail this attempt; ``run`` retries it, ``each`` raises it at the ``yield``."""

    reason: Any


@value
class Skip:
    """``each``: leave the state unchanged for this item and go on."""

    reason: Any = None


@value
class Failure:
    """Stands in for a failed task's result under ``parallel(..., on_error="complete_all")``."""

    error: BaseException
