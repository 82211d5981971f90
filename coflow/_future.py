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

Waiting for it goes through the runner's backend, as ``Runner.result()``
does, so a wait can never stop the scheduler that would settle it:

* ``await future`` waits on the running asyncio loop, whichever backend runs
  the flow (the virtual clock is driven, as by ``await runner.wait()``);
* a blocking ``result()`` or ``exception()`` of a future not yet settled, on
  the thread that runs the flow's scheduler (the asyncio loop's thread, the
  gevent hub greenlet, the threads backend's scheduler thread), raises
  ``RuntimeError`` at once instead of waiting forever.  In another greenlet
  of the hub's thread it blocks only that greenlet; in another thread, that
  thread.  On the virtual clock it waits as a plain ``Future`` does (another
  thread drives the clock, or a ``timeout`` ends the wait).  A settled future
  answers at once anywhere, as ``concurrent.futures`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import Future, TimeoutError as WaitTimedOut
from concurrent.futures._base import FINISHED, PENDING
from typing import TYPE_CHECKING, Any, TypeVar

from ._awaiting import wait_for_latch
from ._backend import Latch

if TYPE_CHECKING:
    from ._runner import Runner

T = TypeVar("T")

_MAKING = threading.Lock()


class SignalFuture(Future[T]):
    """A ``Future`` whose condition variable is made on first use; also awaitable."""

    __slots__ = ("_runner",)
    #: The runner the signal was sent to (set by ``Runner.signal``).
    _runner: Runner

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

    def result(self, timeout: float | None = None) -> T:
        """The new state, once applied; see the module docstring for where it may wait."""
        if self._state != FINISHED:
            self._wait(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error ``fn`` raised, or ``None``; waits as ``result()`` does."""
        if self._state != FINISHED:
            self._wait(timeout)
        return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, T]:
        return self._settled().__await__()

    async def _settled(self) -> T:
        if self._state != FINISHED:
            runner = self._runner
            await wait_for_latch(runner.backend, self._latch(), _what(runner))
        return super().result(0)

    def _wait(self, timeout: float | None) -> None:
        """Block until settled, on the runner's backend; raise where that would never end."""
        runner = self._runner
        backend = runner.backend
        if backend.driven_by_its_caller:
            return  # a plain Future's wait: this thread may not be the one driving the clock
        scheduler = backend.scheduler_here()
        if scheduler is not None:
            raise RuntimeError(
                f"waiting here for {_what(runner)} would block {scheduler}, which applies it: "
                "`await` the future in async code, or use add_done_callback"
            )
        if not backend.wait_latch(self._latch(), timeout, _what(runner)):
            raise WaitTimedOut()  # what Future.result raises when its timeout passes

    def _latch(self) -> Latch:
        """A latch the scheduler sets once the future is settled."""
        latch = Latch()
        self._runner.backend.call_soon_threadsafe(self._set_when_settled, latch)
        return latch

    def _set_when_settled(self, latch: Latch) -> None:
        # On the scheduler, where settle runs too: the outcome cannot arrive in between.
        if self._state == FINISHED:
            latch.set()
        else:
            self.add_done_callback(lambda _: latch.set())


def _what(runner: Runner) -> str:
    return f"the signal to flow {runner.name!r}"
