"""``VirtualBackend``: deterministic virtual time, for tests that run in milliseconds.

Nothing happens between calls: work posted by ``start``, ``signal``, ``send``
or ``stop`` waits in the ready queue until ``advance``, ``run_until_idle``,
``run`` or ``Runner.result()`` runs it.  The loop is the core's
``EventLoopBackend`` (asyncio's iteration order); time only moves when
nothing is ready, straight to the next timer.  Work given to ``run`` runs
inline; its result arrives as ready work.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coflow._backend import Latch
from coflow._errors import Deadlock
from coflow._event_loop import EventLoopBackend, Timer, queue_entry
from coflow._validate import check_count, check_delay, check_horizon, check_time
from coflow._work import call_work

if TYPE_CHECKING:
    from coflow._scheduler import Task

_heappop = heapq.heappop
_INFINITY = float("inf")


class _DoneWork:
    """Inline work has always finished: cancelling it only means its result is ignored.

    The core ignores it: a cancelled task's resumption raises ``Cancelled``
    whatever the work gave, so a cancelled ``run`` commits nothing.
    """

    __slots__ = ()

    def cancel(self) -> None:
        pass


_DONE_WORK = _DoneWork()


class VirtualBackend(EventLoopBackend):
    """Virtual time: ``now()`` moves only through ``advance``, ``run`` and ``result()``."""

    name = "virtual"
    driven_by_its_caller = True

    def __init__(self, start: float = 0.0, seed: int = 0, max_steps: int = 1_000_000) -> None:
        super().__init__()
        self._now = check_time("VirtualBackend", "start", start)
        self._driving = False
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"VirtualBackend: seed must be an int, got {seed!r}")
        self.random = random.Random(seed)
        self.max_steps = check_count("VirtualBackend", "max_steps", max_steps, 1)

    def __repr__(self) -> str:
        ready, timers = len(self._ready) // 2, len(self._timers)
        return f"<VirtualBackend now={self._now:g} ready={ready} timers={timers}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return self._now

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.extend((callback, args))  # one call, so another thread cannot split the pair

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self._timers.push(self._now + delay, callback, args)  # no now() call: hot path

    def wake_later(self, delay: float, task: Task) -> None:
        self._timers.file(self._now + delay, task)

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> _DoneWork:
        # The work runs before its ``done`` is queued: whatever it posts (a signal, a stop, a
        # start) keeps the queue's callback/arguments pairs whole, and takes effect first.
        outcome = call_work(self.name, fn, args)
        self._ready.append(done)
        self._ready.append(outcome)
        return _DONE_WORK

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        horizon = _INFINITY if timeout is None else self._now + timeout
        with self._drive():
            self._run(horizon, latch)
        if latch.is_set:
            return True
        if not self._ready and self._timers.next_deadline() is None:
            raise Deadlock(f"{what} can never finish: no work is ready and no timer is set")
        self._now = horizon
        return False

    # -- driving the clock ---------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, running everything due on the way."""
        seconds = check_delay("VirtualBackend.advance", "seconds", seconds)
        self.run(until=self._now + seconds)

    def run_until_idle(self) -> None:
        """Run all ready work (and what it makes ready); no time passes."""
        with self._drive():
            while self._ready or self._due():
                self._run_once(self._now)

    def run(self, until: float | None = None) -> None:
        """Jump from timer to timer until nothing is left, or until time ``until``."""
        until = check_horizon("VirtualBackend.run", "until", until, self._now)
        with self._drive():
            self._run(_INFINITY if until is None else until, None)
        if until is not None and until > self._now:
            self._now = until

    # -- internals -------------------------------------------------------------------

    def _run(self, horizon: float, latch: Latch | None) -> None:
        """Run what is ready, and jump from deadline to deadline up to ``horizon``.

        Stops when nothing is left, when the next deadline is past ``horizon``,
        or once ``latch`` is set.
        """
        heap, ready = self._timers, self._ready
        deadlines, due = heap.deadlines, heap.due
        while latch is None or not latch.is_set:
            if ready:
                self._run_once(self._now)
                continue
            if not deadlines:
                return
            when = deadlines[0]
            if when > horizon:
                return
            _heappop(deadlines)
            entries = due.pop(when, None)
            if not entries:
                continue  # a deadline whose timers were all cancelled
            if when > self._now:
                self._now = when
            if len(entries) == 1:
                # The only one due, nothing ready: run it here, with no trip through the
                # ready queue.  A filed task resumes itself; a timer runs its callback.
                (entry,) = entries
                if entry.__class__ is Timer:
                    entry.heap = None
                    entry.fire()
                else:
                    entry.timer = None
                    entry.resume_filed(when, heap)
                continue
            for entry in entries:  # a tie: all join the ready queue, in the order filed
                queue_entry(entry, when, ready)

    def _due(self) -> bool:
        when = self._timers.next_deadline()
        return when is not None and when <= self._now

    def _drive(self) -> _Driving:
        return _Driving(self)


class _Driving:
    """Guards against driving the clock from inside one of its own callbacks."""

    __slots__ = ("backend",)

    def __init__(self, backend: VirtualBackend) -> None:
        self.backend = backend

    def __enter__(self) -> None:
        if self.backend._driving:
            raise RuntimeError(
                "the virtual clock is already running: do not call result(), advance() or run() "
                "from inside a flow or a callback on the same VirtualBackend"
            )
        self.backend._driving = True

    def __exit__(self, *exc_info: object) -> None:
        self.backend._driving = False


def default_backend() -> VirtualBackend:
    """What ``backend="virtual"`` gives: a fresh virtual clock."""
    return VirtualBackend()
