"""``VirtualBackend``: deterministic virtual time, for tests that run in milliseconds.

Nothing happens between calls: work posted by ``start``, ``signal``, ``send``
or ``stop`` waits in the ready queue until ``advance``, ``run_until_idle``,
``run`` or ``Runner.result()`` runs it.  The loop is the core's
``EventLoopBackend`` (asyncio's iteration order); time only moves when
nothing is ready, straight to the next timer.  Work given to ``run`` runs
inline; its result arrives as ready work.

Async work (a coroutine function, or a callable that returns an awaitable)
runs on an asyncio event loop this backend hosts (``HostedEventLoop``): its
time is this clock, each of its timers one of this backend's, each of its
iterations a callback of this backend's.  So ``asyncio.sleep``, ``wait_for``
and ``asyncio.timeout`` in the work take virtual time, in order with the
flows' own timers.  While executor work that the loop started runs in a real
thread, time does not move: the clock waits for the thread, up to the loop's
``real_timeout`` of real time, and then raises ``TimeoutError`` naming it.
"""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Callable
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from coflow._backend import Latch
from coflow._errors import Deadlock
from coflow._event_loop import EventLoopBackend, Timer
from coflow._validate import check_count, check_delay, check_horizon, check_time

if TYPE_CHECKING:
    from coflow._scheduler import Task

    from .virtual_loop import HostedEventLoop

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
        #: The clock: the timer heap's, which jumps to each deadline as it runs it.
        self._timers.now = check_time("VirtualBackend", "start", start)
        self._driving = False
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"VirtualBackend: seed must be an int, got {seed!r}")
        self.random = random.Random(seed)
        self.max_steps = check_count("VirtualBackend", "max_steps", max_steps, 1)
        #: The asyncio loop async work runs on, made when the first such work starts.
        self._loop: HostedEventLoop | None = None
        #: Set by a post from another thread while the clock waits for executor work
        #: (``_awaiting_post``): only then, so a post costs no lock the rest of the time.
        self._posted = threading.Event()
        self._awaiting_post = False

    def __repr__(self) -> str:
        ready, timers = len(self._ready) // 2, len(self._timers)
        return f"<VirtualBackend now={self._timers.now:g} ready={ready} timers={timers}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return self._timers.now

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.extend((callback, args))  # one call, so another thread cannot split the pair
        if self._awaiting_post:  # read after the post is in: see ``_holding_time``
            self._posted.set()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timers = self._timers
        return timers.push(timers.now + delay, callback, args)  # no now() call: hot path

    def wake_later(self, delay: float, task: Task) -> None:
        timers = self._timers
        timers.file(timers.now + delay, task)

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> Any:
        # Plain work runs before its ``done`` is queued: whatever it posts (a signal, a stop, a
        # start) keeps the queue's callback/arguments pairs whole, and takes effect first.
        try:  # in a context of its own, as work on a real backend's task, greenlet or thread
            value = copy_context().run(fn, *args)
        except BaseException as error:  # SPEC §9: whatever it raises fails only the attempt
            outcome: tuple[Any, BaseException | None] = (None, error)
        else:
            if hasattr(value.__class__, "__await__"):
                return self._event_loop().start_work(value, done)
            outcome = (value, None)
        self._ready.append(done)
        self._ready.append(outcome)
        return _DONE_WORK

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        horizon = _INFINITY if timeout is None else self._timers.now + timeout
        with self._drive():
            self._run(horizon, latch)
        if latch.is_set:
            return True
        if not self._ready and self._timers.next_deadline() is None:
            raise Deadlock(
                f"{what} can never finish: no work is ready and no timer is set"
                + self._pending_tasks()
            )
        self._timers.now = horizon
        return False

    # -- driving the clock ---------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, running everything due on the way."""
        seconds = check_delay("VirtualBackend.advance", "seconds", seconds)
        self.run(until=self._timers.now + seconds)

    def run_until_idle(self) -> None:
        """Run all ready work (and what it makes ready); no time passes."""
        with self._drive():
            while self._ready or self._due():
                self._run_once(self._timers.now)

    def run(self, until: float | None = None) -> None:
        """Jump from timer to timer until nothing is left, or until time ``until``."""
        until = check_horizon("VirtualBackend.run", "until", until, self._timers.now)
        with self._drive():
            self._run(_INFINITY if until is None else until, None)
        if until is not None and until > self._timers.now:
            self._timers.now = until

    # -- internals -------------------------------------------------------------------

    def _run(self, horizon: float, latch: Latch | None) -> None:
        """Run what is ready, and jump from deadline to deadline up to ``horizon``.

        Stops when nothing is left, when the next deadline is past ``horizon``,
        or once ``latch`` is set.
        """
        timers, ready = self._timers, self._ready
        while True:  # not ``while <test>``: see ``TimerHeap.run_virtual``, entered the same way
            if latch is not None and latch.is_set:
                return
            if ready:
                self._run_once(timers.now)
            elif self._loop is not None and self._holding_time():
                continue
            elif not timers.run_virtual(horizon, ready):
                return

    def close(self) -> None:
        """Close the asyncio loop async work ran on, if any."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    def _event_loop(self) -> HostedEventLoop:
        loop = self._loop
        if loop is None:
            from .virtual_loop import HostedEventLoop  # asyncio only once async work starts

            loop = self._loop = HostedEventLoop(self)
            weakref.finalize(self, loop.close)  # the loop holds this backend only weakly
        return loop

    def _holding_time(self) -> bool:
        """Wait for executor work the loop started, if any; True if time had to stand still."""
        loop = self._loop
        if loop is None or not loop.holding():
            return False
        # Asked for before the queue is looked at: a post that comes after the look
        # then sees it, and sets the event.
        self._awaiting_post = True
        try:
            self._posted.clear()
            if self._ready:
                return True  # posted meanwhile
            if not self._posted.wait(loop.real_timeout):
                raise TimeoutError(
                    f"executor work held the virtual clock for {loop.real_timeout:g} s of real "
                    f"time with nothing happening: {loop.holding()}. Virtual time cannot pass "
                    "while it runs; a hung thread is a bug"
                )
        finally:
            self._awaiting_post = False
        return True

    def _pending_tasks(self) -> str:
        loop = self._loop
        pending = loop.pending_tasks() if loop is not None else ""
        return f"; asyncio tasks pending: {pending}" if pending else ""

    def _due(self) -> bool:
        when = self._timers.next_deadline()
        return when is not None and when <= self._timers.now

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
