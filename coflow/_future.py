"""``SignalFuture``: the ``concurrent.futures.Future`` that ``Runner.signal`` returns.

A plain ``Future`` builds a ``threading.Condition`` (and two lists) up front,
which costs more than applying a signal.  This one builds them only when
someone reads, waits on, cancels or adds a callback to the future; a future
nobody has looked at is settled without them, because nobody can be waiting.  ``_MAKING`` makes that
check and the creation atomic with respect to each other.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING, RUNNING
from typing import Any, TypeVar

T = TypeVar("T")

_MAKING = threading.Lock()


class SignalFuture(Future[T]):
    """A ``Future`` whose condition variable is made on first use."""

    # Future.__init__ would make the condition: start from these class-level defaults instead.
    __init__ = object.__init__
    _lazy_condition: threading.Condition | None = None
    _state = PENDING
    _result: Any = None
    _exception: BaseException | None = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        condition = self._lazy_condition
        if condition is None:
            with _MAKING:
                condition = self._lazy_condition
                if condition is None:
                    # Future only touches its waiter and callback lists under the condition.
                    self._waiters: list[Any] = []
                    self._done_callbacks: list[Any] = []
                    condition = self._lazy_condition = threading.Condition()
        return condition

    def claim(self) -> bool:
        """Mark the future running; ``False`` if it was cancelled first."""
        with _MAKING:
            if self._lazy_condition is None:
                self._state = RUNNING
                return True
        return self.set_running_or_notify_cancel()

    def settle(self, result: Any, exception: BaseException | None) -> None:
        """Set the result or the exception, once, after ``claim``."""
        with _MAKING:
            if self._lazy_condition is None:
                self._result = result
                self._exception = exception
                self._state = FINISHED
                return
        if exception is None:
            self.set_result(result)
        else:
            self.set_exception(exception)
