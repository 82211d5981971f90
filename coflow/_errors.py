"""The error hierarchy.

Every public error derives from :class:`FlowException`; each takes structured
arguments and builds its own message.  :class:`Cancelled` is the one
exception that is not a ``FlowException``: it derives from ``BaseException``
so that ``except Exception`` in a flow cannot swallow a stop.
"""

from __future__ import annotations

from typing import Any


class FlowException(Exception):
    """Base of every error coflow raises."""


class FlowFailed(FlowException):
    """Raised by ``Runner.result()`` when the flow failed; ``__cause__`` is the reason."""

    def __init__(self, flow_name: str, reason: BaseException, where: str | None = None) -> None:
        self.flow_name = flow_name
        self.reason = reason
        self.where = where
        location = f" ({where})" if where else ""
        super().__init__(f"flow {flow_name!r} failed{location}: {reason!r}")


class FlowStopped(FlowException):
    """Raised by ``Runner.result()`` when the flow was stopped."""

    def __init__(self, flow_name: str) -> None:
        self.flow_name = flow_name
        super().__init__(f"flow {flow_name!r} was stopped")


class FlowTimeout(FlowException, TimeoutError):
    """A step, or a wait for a result, did not finish within its time limit."""

    def __init__(self, what: str, seconds: float) -> None:
        self.what = what
        self.seconds = seconds
        super().__init__(f"{what} timed out after {seconds:g}s")


class StepFailed(FlowException):
    """A step returned ``Error(reason)`` where ``reason`` is not an exception."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"step failed: {reason!r}")


class RetriesExhausted(FlowException):
    """Every attempt of a ``run`` failed; ``last_error`` (also ``__cause__``) is the last error."""

    def __init__(self, attempts: int, last_error: BaseException) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"gave up after {attempts} attempts; last error: {last_error!r}")


class ChildFailed(FlowException):
    """A child flow failed; ``__cause__`` is the child's error.

    When that error is itself a ``ChildFailed`` (a grandchild failed), the
    message names the flows down to the first error instead of quoting each
    level's message inside the next, so it stays short at any depth.
    """

    def __init__(self, child_name: str, reason: BaseException) -> None:
        self.child_name = child_name
        self.reason = reason
        # The chain below, built from the one below's in constant time: N nested calls
        # failing cost O(N), not a walk down the chain at every level.
        if isinstance(reason, ChildFailed):
            name = repr(reason.child_name)
            self._first: BaseException = reason._first
            self._depth: int = reason._depth + 1
            self._head: list[str] = [name, *reason._head[: _SHOWN_CHILDREN - 1]]
            self._tail: list[str] = [name, *reason._tail][-_SHOWN_TAIL:]
        else:
            self._first, self._depth, self._head, self._tail = reason, 0, [], []
        below = self._head
        if self._depth > _SHOWN_CHILDREN:
            hidden = self._depth - _SHOWN_HEAD - _SHOWN_TAIL
            below = [*below[:_SHOWN_HEAD], f"... {hidden} more ...", *self._tail]
        through = f", through its child flows {' > '.join(below)}" if below else ""
        super().__init__(f"child flow {child_name!r} failed{through}: {self._first!r}")


#: Nested child flows a ``ChildFailed`` message names before eliding the middle ones.
_SHOWN_CHILDREN = 8
_SHOWN_HEAD = 4
_SHOWN_TAIL = _SHOWN_CHILDREN - _SHOWN_HEAD - 1


class FlowNotRunning(FlowException):
    """A signal or message was sent to a runner that has ended."""

    def __init__(self, flow_name: str, status: str, action: str) -> None:
        self.flow_name = flow_name
        self.status = status
        super().__init__(f"cannot {action} flow {flow_name!r}: it is {status}")


class Deadlock(FlowException):
    """On the virtual clock, nothing is left that could wake what is being waited for."""


class HeldClock(FlowException):
    """On the virtual clock, a flow ran past ``max_steps`` at one instant without blocking.

    Raised to the call driving the clock (``advance``, ``run``, ``result``),
    which the backend's own loop lets through: it reports the test's mistake,
    it is not a failure of the flow, which stays running.
    """


class InvalidStep(FlowException, TypeError):
    """A flow yielded something that is neither a step nor a flow (or gave it to a step)."""


class Cancelled(BaseException):
    """Raised inside a suspended flow at its ``yield`` when the flow is cancelled.

    ``finally`` blocks and ``except Cancelled`` handlers may yield cleanup
    steps; they run to completion.  Re-raise it (or let it propagate): a flow
    that swallows it is still ended by the cancellation.
    """
