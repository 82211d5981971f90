"""Work that lasts: ``coflow.testing.lasting(seconds, fn)`` gives work a duration.

Lasting work starts as any work does, and its outcome reaches the flow once
the work has finished *and* ``seconds`` have passed on the backend's clock,
whichever comes later.  On the virtual clock, where work runs inline in no
time, the outcome arrives exactly ``seconds`` later: signals land while the
work runs, an attempt's ``run(timeout=)`` fires, and a race is won by the
work that ends first, as they would against a real API.  On the real
backends the work takes at least that long.

``fn`` runs when the work starts (with the state the attempt starts from);
only its outcome waits.  A cancel (a stop, a lost race, an attempt's timeout)
ends the work at once: whatever it gave is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._step import describe
from ._validate import check_delay

if TYPE_CHECKING:
    from ._backend import Backend, Handle

Done = Callable[[Any, "BaseException | None"], Any]


class Lasting:
    """``fn``, as work that lasts ``seconds`` (see the module docstring); callable as ``fn``."""

    __slots__ = ("__wrapped__", "fn", "seconds")

    def __init__(self, seconds: float, fn: Callable[..., Any]) -> None:
        self.seconds = check_delay("lasting", "seconds", seconds)
        if not callable(fn):
            raise TypeError(f"lasting({seconds!r}, ...): fn must be callable, got {fn!r}")
        self.fn = self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lasting({self.seconds:g}, {describe(self.fn)})"


def start_work(
    backend: Backend, fn: Callable[..., Any], args: tuple[Any, ...], done: Done
) -> Handle:
    """``backend.start_work``, giving lasting work its duration."""
    if fn.__class__ is Lasting:
        lasting: Lasting = fn
        return LastingWork(backend, lasting.seconds, backend.start_work, lasting.fn, args, done)
    return backend.start_work(fn, args, done)


class LastingWork:
    """Work whose outcome is held until ``seconds`` have passed: its handle.

    ``start(fn, args, finished)`` starts the work itself (a backend's
    ``start_work``); the virtual clock's schedule exploration gives each piece
    of work a duration this way too.
    """

    __slots__ = ("backend", "done", "handle", "outcome", "timer")

    def __init__(
        self,
        backend: Backend,
        seconds: float,
        start: Callable[[Callable[..., Any], tuple[Any, ...], Done], Handle],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done,
    ) -> None:
        self.backend = backend
        self.done: Done | None = done
        #: The work's ``(value, error)`` once it has finished before its duration is over.
        self.outcome: tuple[Any, BaseException | None] | None = None
        self.timer: Handle | None = backend.call_later(seconds, self._elapsed)
        self.handle = start(fn, args, self._finished)

    def _finished(self, value: Any, error: BaseException | None) -> None:
        if self.timer is None:  # the duration is over, or the work was cancelled
            self._end(value, error)
        else:
            self.outcome = (value, error)

    def _elapsed(self) -> None:
        self.timer = None
        if self.outcome is not None:
            self._end(*self.outcome)

    def _end(self, value: Any, error: BaseException | None) -> None:
        done, self.done = self.done, None
        self.outcome = None
        if done is not None:  # exactly once
            done(value, error)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.outcome is not None:  # the work has finished: nothing else will report it
            self.backend.call_soon(self._end, None, None)
        else:
            self.handle.cancel()  # the backend reports the end, through ``_finished``
