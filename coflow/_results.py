"""The values a ``run`` function or an ``each`` callback returns to steer its step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._missing import MISSING, MissingType
from ._values import value

S = TypeVar("S")


@value
class Ok(Generic[S]):
    """Continue with ``state`` as the flow's new state."""

    state: S


@value
class Update(Generic[S]):
    """Continue with ``fn(state)`` as the new state, ``state`` being the state when the work ends.

    Applied on the scheduler as a signal is, so changes that arrived while the
    work ran (signals, parallel branches) are kept, where ``Ok`` would replace
    them.  ``yield`` gives the new state; if ``fn`` raises, the attempt fails
    with that error (retried like an error of the work).
    """

    fn: Callable[[S], S]


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
