"""A ready queue and a timer heap: the event loop the virtual and threads backends share.

One iteration works as asyncio's does: the timers now due join the ready
queue (in deadline order, ties in the order they were set), then the
callbacks that were ready at the start of the iteration run, FIFO.  So a
zero-delay timer runs after the work already ready.  What differs between
the backends using it is only where ``now`` comes from and how the loop
waits for the next deadline: the virtual clock jumps to it, the threads
backend sleeps until it (or until another thread posts work).

Cancelled timers stay on the heap until they reach its top (lazy deletion,
as in simpy and asyncio); the heap is rebuilt without them once they are
half of it, so long timeouts cancelled over and over cannot pile up.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ._backend import Backend
from ._errors import HeldClock

logger = logging.getLogger("coflow")


class Timer:
    """A callback on the timer heap; ``cancel()`` drops it."""

    __slots__ = ("args", "callback", "heap")
    # Built only by ``TimerHeap.push``, through the slot descriptors (no ``__init__`` call).
    args: tuple[Any, ...]
    callback: Callable[..., Any] | None
    #: The heap the timer is on, while it is there and not cancelled.
    heap: TimerHeap | None

    def cancel(self) -> None:
        # The arguments go too: they hold the task, so its runner and state, until the
        # cancelled timer leaves the heap, which lazy deletion may put off for as long as it is due.
        self.callback = None
        self.args = ()
        heap, self.heap = self.heap, None
        if heap is not None:
            heap.timer_cancelled()

    def fire(self) -> None:
        """Run the callback, unless the timer was cancelled after it became due."""
        if self.callback is not None:
            self.callback(*self.args)


_new = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_set_callback = Timer.__dict__["callback"].__set__
_set_args = Timer.__dict__["args"].__set__
_set_heap = Timer.__dict__["heap"].__set__
#: Fewer cancelled timers than this are never worth rebuilding the heap for.
_COMPACT_AT = 256


class TimerHeap:
    """``(deadline, sequence, timer)`` entries; the sequence makes ties fire in the order set."""

    __slots__ = ("_order", "cancelled", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, Timer]] = []
        self.cancelled = 0  # cancelled timers still on the heap
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> Timer:
        timer = _new(Timer)  # through the slot descriptors: a clock's hottest allocation
        _set_callback(timer, callback)
        _set_args(timer, args)
        _set_heap(timer, self)
        _heappush(self.entries, (deadline, next(self._order), timer))
        return timer

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live timer, dropping cancelled ones from the top."""
        entries = self.entries
        while entries and entries[0][2].callback is None:
            _heappop(entries)
            self.cancelled -= 1
        return entries[0][0] if entries else None

    def move_due(self, now: float, ready: deque[Any]) -> None:
        """Append every timer due at ``now`` to ``ready``, in deadline order."""
        entries = self.entries
        while entries and entries[0][0] <= now:
            timer = _heappop(entries)[2]
            if timer.callback is None:
                self.cancelled -= 1
                continue
            timer.heap = None
            ready.append(timer.fire)
            ready.append(())

    def timer_cancelled(self) -> None:
        """Rebuild the heap without its cancelled timers once they are half of it."""
        self.cancelled += 1
        entries = self.entries
        if self.cancelled > _COMPACT_AT and 2 * self.cancelled > len(entries):
            entries[:] = [entry for entry in entries if entry[2].callback is not None]
            heapq.heapify(entries)
            self.cancelled = 0


class EventLoopBackend(Backend):
    """A backend whose scheduler is a ready queue and a timer heap it runs itself."""

    def __init__(self) -> None:
        #: Callbacks and their argument tuples, alternately (no pair to allocate), FIFO.
        self._ready: deque[Any] = deque()
        self._timers = TimerHeap()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        ready = self._ready
        ready.append(callback)
        ready.append(args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self._timers.push(self.now() + delay, callback, args)

    def _run_once(self, now: float) -> None:
        """One iteration: due timers join the ready queue, then what was ready runs."""
        ready = self._ready
        self._timers.move_due(now, ready)
        pop = ready.popleft
        for _ in range(len(ready) >> 1):
            callback = pop()
            try:
                callback(*pop())
            except HeldClock:
                raise  # the virtual clock's limit: the call driving the clock reports it
            except Exception:  # a core bug must not take every flow of the backend down
                logger.exception("scheduler callback %r raised; the backend goes on", callback)
