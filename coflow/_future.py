"""``SignalFuture``: the ``concurrent.futures.Future`` that ``Runner.signal`` returns.

A plain ``Future`` builds a ``threading.Condition`` and two lists up front,
and takes a lock at every transition: together that costs more than applying
a signal.  This one builds them only when another thread looks at the future
(reads, waits on it, or adds a callback), and is settled without a lock:

* only the scheduler settles it, once, and a sent signal cannot be cancelled
  (``cancel()`` returns ``False``, as for a call already running), so no
  other transition competes with settling;
* ``settle`` writes the outcome first and only then looks for a condition.
  A reader that made the condition before that look is woken under it; one
  that makes it after finds the outcome already there.  ``Future``'s own
  methods read the state under the condition, so neither can miss it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING
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

    def cancel(self) -> bool:
        """A sent signal is already on its way to the scheduler: it cannot be cancelled."""
        return False

    def settle(self, result: Any, exception: BaseException | None) -> None:
        """Set the outcome, once, on the scheduler; wake whoever already looked."""
        self._result = result
        self._exception = exception
        self._state = FINISHED
        condition = self._lazy_condition
        if condition is None:
            return  # nobody has looked yet: whoever looks later finds the outcome
        with condition:
            for waiter in self._waiters:
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]
