"""``VirtualBackend``: deterministic virtual time, for tests that run in milliseconds.

Nothing happens between calls: work posted by ``start``, ``signal``, ``send``
or ``stop`` waits in the ready queue until ``advance``, ``run_until_idle``,
``run`` or ``Runner.result()`` runs it.  One iteration works as asyncio's
does: the timers now due join the ready queue (in deadline order, ties in the
order they were set), then the callbacks that were ready at the start of the
iteration run, FIFO.  So a zero-delay timer runs after the work already
ready.  Time only moves when nothing is ready, straight to the next timer.
Work given to ``run`` runs inline; its result arrives as ready work.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from coflow._backend import Backend, Latch
from coflow._errors import Deadlock
from coflow._steps import describe


class _Timer:
    """A callback on the timer heap; ``cancel()`` drops it.

    A cancelled timer stays on the heap until it reaches the top (lazy
    deletion); while it is there, ``on_heap`` counts it for the backend, which
    rebuilds the heap once cancelled timers are half of it, as asyncio does.
    """

    __slots__ = ("args", "callback", "on_heap")
    # Built only by ``call_later``, through the slot descriptors (no ``__init__`` call).
    args: tuple[Any, ...]
    callback: Callable[..., Any] | None
    on_heap: VirtualBackend | None

    def cancel(self) -> None:
        self.callback = None
        backend, self.on_heap = self.on_heap, None
        if backend is not None:
            backend.timer_cancelled()

    def fire(self) -> None:
        """Run the callback, unless the timer was cancelled after it became due."""
        if self.callback is not None:
            self.callback(*self.args)


_new = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_INFINITY = float("inf")
_set_callback = _Timer.__dict__["callback"].__set__
_set_args = _Timer.__dict__["args"].__set__
_set_on_heap = _Timer.__dict__["on_heap"].__set__
#: Fewer cancelled timers than this are never worth rebuilding the heap for.
_COMPACT_AT = 256


class _DoneWork:
    """Inline work has always finished: cancelling it only means its result is ignored."""

    __slots__ = ()

    def cancel(self) -> None:
        pass


_DONE_WORK = _DoneWork()


class VirtualBackend(Backend):
    """Virtual time: ``now()`` moves only through ``advance``, ``run`` and ``result()``."""

    name = "virtual"

    def __init__(self, start: float = 0.0, seed: int = 0, max_steps: int = 1_000_000) -> None:
        self._now = float(start)
        #: Callbacks and their argument tuples, alternately (no pair to allocate), FIFO.
        self._ready: deque[Any] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._cancelled = 0  # cancelled timers still on the heap
        self._order = itertools.count()
        self._driving = False
        self.random = random.Random(seed)
        self.max_steps = max_steps

    def __repr__(self) -> str:
        ready, timers = len(self._ready) // 2, len(self._timers)
        return f"<VirtualBackend now={self._now:g} ready={ready} timers={timers}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return self._now

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        ready = self._ready
        ready.append(callback)
        ready.append(args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.extend((callback, args))  # one call, so another thread cannot split the pair

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        timer = _new(_Timer)  # through the slot descriptors: the clock's hottest allocation
        _set_callback(timer, callback)
        _set_args(timer, args)
        _set_on_heap(timer, self)
        _heappush(self._timers, (self._now + delay, next(self._order), timer))
        return timer

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> _DoneWork:
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args)
        except Exception as raised:
            error = raised
        if hasattr(value.__class__, "__await__"):
            # A coroutine function's body has not started: close it and refuse it.
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                f"{describe(fn)} gave an awaitable (is it a coroutine function?), which the "
                "virtual backend cannot await; give a plain function, or use the asyncio backend"
            )
        self._ready.append(done)
        self._ready.append((value, error))
        return _DONE_WORK

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        deadline = None if timeout is None else self._now + timeout
        with self._drive():
            while not latch.is_set:
                if self._ready:
                    self._run_once()
                    continue
                when = self._next_deadline()
                if when is None:
                    raise Deadlock(f"{what} can never finish: no work is ready and no timer is set")
                if deadline is not None and when > deadline:
                    self._now = deadline
                    return False
                self._now = max(self._now, when)
                self._run_once()
        return True

    async def wait_latch_async(self, latch: Latch, what: str) -> None:
        self.wait_latch(latch, None, what)

    # -- driving the clock ---------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, running everything due on the way."""
        if seconds < 0:
            raise ValueError(f"advance: seconds must be >= 0, got {seconds!r}")
        self.run(until=self._now + seconds)

    def run_until_idle(self) -> None:
        """Run all ready work (and what it makes ready); no time passes."""
        with self._drive():
            while self._ready or self._due():
                self._run_once()

    def run(self, until: float | None = None) -> None:
        """Jump from timer to timer until nothing is left, or until time ``until``."""
        timers, ready = self._timers, self._ready
        horizon = _INFINITY if until is None else until
        with self._drive():
            while True:
                if ready:
                    self._run_once()
                    continue
                if not timers:
                    break
                when, _, timer = timers[0]
                if timer.callback is None:
                    _heappop(timers)  # lazily drop a cancelled timer
                    self._cancelled -= 1
                    continue
                if when > horizon:
                    break
                if when > self._now:
                    self._now = when
                _heappop(timers)
                timer.on_heap = None
                if timers and timers[0][0] <= when:
                    # A tie: every timer due now joins the ready queue, in the order set.
                    ready.append(timer.fire)
                    ready.append(())
                    self._run_once()
                    continue
                timer.callback(*timer.args)  # the only one due, nothing ready: run it directly
            if until is not None and until > self._now:
                self._now = until

    # -- internals -------------------------------------------------------------------

    def _next_deadline(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].callback is None:
            _heappop(timers)  # lazily drop cancelled timers
            self._cancelled -= 1
        return timers[0][0] if timers else None

    def timer_cancelled(self) -> None:
        """Rebuild the heap without its cancelled timers once they are half of it."""
        self._cancelled += 1
        timers = self._timers
        if self._cancelled > _COMPACT_AT and 2 * self._cancelled > len(timers):
            timers[:] = [entry for entry in timers if entry[2].callback is not None]
            heapq.heapify(timers)
            self._cancelled = 0

    def _due(self) -> bool:
        when = self._next_deadline()
        return when is not None and when <= self._now

    def _run_once(self) -> None:
        timers, ready, now = self._timers, self._ready, self._now
        while timers and timers[0][0] <= now:
            timer = _heappop(timers)[2]
            if timer.callback is None:
                self._cancelled -= 1
                continue
            timer.on_heap = None
            ready.append(timer.fire)
            ready.append(())
        pop = ready.popleft
        for _ in range(len(ready) >> 1):
            pop()(*pop())

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
