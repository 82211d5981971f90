"""A ready queue and a timer heap: the event loop the virtual, threads and gevent backends share.

One iteration works as asyncio's does: the timers now due join the ready
queue (in deadline order, ties in the order they were set), then the
callbacks that were ready at the start of the iteration run, FIFO.  So a
zero-delay timer runs after the work already ready.  What differs between
the backends using it is only where ``now`` comes from and how the loop
waits for the next deadline: the virtual clock jumps to it, the threads
backend sleeps until it (or until another thread posts work), the gevent
backend arms one hub timer for it.  ``EventLoopBackend.run_iteration`` is
the one driver of a real-time loop: it runs an iteration and says how long
the loop may wait; ``TimerHeap.run_virtual`` is the virtual clock's, which
runs deadline after deadline while nothing is ready.

The heap holds distinct deadlines, as plain floats (the cheapest thing to
compare); what is due at each is the one timer or filed task due then, or
for a tie a dict of them in the order they were filed, so ties keep their
order and a cancel is a deletion.  A ``wait`` files its task itself
(``wake_later``): no timer object is made for the commonest timer.  A
deadline left with nothing due stays on the heap until it reaches the top;
the heap is rebuilt once most of it is such deadlines.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._backend import Backend
from ._errors import HeldClock
from ._steps import Wait

if TYPE_CHECKING:
    from ._scheduler import Task

logger = logging.getLogger("coflow")


class Timer:
    """A callback on the timer heap; ``cancel()`` drops it."""

    __slots__ = ("args", "callback", "heap", "when")
    # Built only by ``TimerHeap.push``, through the slot descriptors (no ``__init__`` call).
    args: tuple[Any, ...]
    callback: Callable[..., Any] | None
    #: The heap the timer is on, while it is there and not cancelled.
    heap: TimerHeap | None
    when: float

    def cancel(self) -> None:
        # The arguments go too: they hold the task, so its runner and state.
        self.callback = None
        self.args = ()
        heap, self.heap = self.heap, None
        if heap is not None:
            heap.discard(self.when, self)

    def fire(self) -> None:
        """Run the callback, unless the timer was cancelled after it became due."""
        if self.callback is not None:
            self.callback(*self.args)


_new = object.__new__
_heappush = heapq.heappush
_heappop = heapq.heappop
_heapreplace = heapq.heapreplace
_set_callback = Timer.__dict__["callback"].__set__
_set_args = Timer.__dict__["args"].__set__
_set_heap = Timer.__dict__["heap"].__set__
_set_when = Timer.__dict__["when"].__set__
#: Fewer stale deadlines than this are never worth rebuilding the heap for.
_COMPACT_AT = 256


def fire_filed(task: Task, when: float) -> None:
    """Resume a task filed by ``wake_later`` for ``when``, unless it was woken otherwise since."""
    if task.timer.__class__ is TimerHeap and task.deadline == when:
        task.timer = None
        task.drive(None, None)


class TimerHeap:
    """A heap of distinct deadlines, and what is due at each, in the order it was filed.

    ``deadlines`` is a heap of floats (``heapq``); ``due`` maps each to what is
    due then: a timer or a filed task, or for a tie a dict of them as keys, in
    the order they were filed.  Most deadlines on a clock are due for one
    thing alone, so that one needs no dict of its own.  A deadline on the heap
    but not in ``due`` has nothing left.  A loop takes what is due through
    ``move_due`` (one iteration, everything due by then) or ``run_virtual``
    (virtual time: deadline after deadline, time jumping to each).
    """

    __slots__ = ("deadlines", "due", "now")

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.due: dict[float, Any] = {}
        #: The deadline ``run_virtual`` reached last: a virtual clock's time (a loop on a
        #: real clock reads its clock instead, and leaves this alone).
        self.now = 0.0

    def __len__(self) -> int:
        return sum(len(entry) if entry.__class__ is dict else 1 for entry in self.due.values())

    def push(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> Timer:
        timer = _new(Timer)  # through the slot descriptors: a clock's hot allocation
        _set_callback(timer, callback)
        _set_args(timer, args)
        _set_heap(timer, self)
        _set_when(timer, deadline)
        self.add(deadline, timer)
        return timer

    def file(self, deadline: float, task: Task) -> None:
        """Have ``task`` driven at ``deadline``; it holds this heap as its timer until then."""
        task.deadline = deadline
        task.timer = self
        self.add(deadline, task)

    def add(self, deadline: float, entry: Any) -> None:
        """Put a timer or a filed task on the heap (``push`` and ``file`` make them)."""
        due = self.due
        found = due.setdefault(deadline, entry)
        if found is entry:
            _heappush(self.deadlines, deadline)
        else:
            _tie(due, deadline, found, entry)

    def unfile(self, task: Task) -> None:
        """``task`` was woken otherwise: it is no longer due (``Task.wake_soon``)."""
        self.discard(task.deadline, task)

    def discard(self, deadline: float, entry: Any) -> None:
        due = self.due
        found = due.get(deadline)
        if found.__class__ is dict and entry in found:
            del found[entry]
            if found:
                return
        elif found is not entry:
            return  # already moved to the ready queue: firing it checks that it is still due
        del due[deadline]
        deadlines = self.deadlines
        if len(deadlines) > 2 * len(due) + _COMPACT_AT:
            deadlines[:] = due
            heapq.heapify(deadlines)

    def next_deadline(self) -> float | None:
        """The earliest deadline with something due, dropping stale ones from the top."""
        deadlines, due = self.deadlines, self.due
        while deadlines and deadlines[0] not in due:
            _heappop(deadlines)
        return deadlines[0] if deadlines else None

    def take_due(self, now: float) -> Iterator[tuple[float, Any]]:
        """Take each entry due by ``now``, with its deadline: earliest first, ties as filed.

        For a loop whose entries are its own (the virtual asyncio loop files
        asyncio's timer handles); ``move_due`` takes timers and filed tasks.
        """
        deadlines, due = self.deadlines, self.due
        while deadlines and deadlines[0] <= now:
            when = _heappop(deadlines)
            found = due.pop(when, None)
            if found.__class__ is dict:
                for entry in found:
                    yield when, entry
            elif found is not None:
                yield when, found

    def move_due(self, now: float, ready: deque[Any]) -> None:
        """Append everything due at ``now`` to ``ready``, in deadline order, ties as filed."""
        for when, entry in self.take_due(now):
            queue_entry(entry, when, ready)

    def run_virtual(self, horizon: float, ready: deque[Any]) -> bool:
        """Run what is due, deadline after deadline up to ``horizon``, while nothing is ready.

        Virtual time: ``now`` jumps to each deadline as it is reached.  Returns
        False when nothing is due by ``horizon``; True once work is ready, or
        once something else than a waiting flow has run (a timer's callback, a
        cancelled or ending task, a step but ``wait``): the caller then runs what
        is ready, and checks whatever it waits for (a latch, work holding time
        still), before calling again.

        A deadline due for one thing alone runs here, with no trip through the
        ready queue.  For a filed task, the commonest event on a clock, this loop
        is the step loop's fast path written out: it resumes the top frame
        itself, and files the task again if the frame yields another ``wait``,
        with no call but the frame's; anything else goes on in ``Task.drive``.
        Only the flow's own code runs in between, and it reaches the scheduler
        only by posting work, so no latch can be set without ``ready`` saying so.
        """
        deadlines, due = self.deadlines, self.due
        # ``while True``: CPython 3.11 specializes a loop's code only once an
        # unconditional backward jump has run a few times, and this loop may be
        # entered once for a whole run.
        while True:
            if ready:
                return True
            try:
                when = deadlines[0]
            except IndexError:
                return False  # nothing left
            if when > horizon:
                return False
            entry = due.pop(when, None)
            cls = entry.__class__
            if (
                cls is Timer
                or cls is dict
                or entry is None
                or (entry.stack is not None and entry.stack.cancel_pending)  # Task.cancel_pending
            ):
                _heappop(deadlines)
                if entry is None:
                    continue  # a deadline whose timers were all cancelled
                self.now = when
                _run_due(entry, when, ready)
                return True
            # A filed task alone at its deadline: ``when`` stays on top of the heap,
            # with nothing due, until the task's next deadline replaces it.
            self.now = when
            try:
                step = entry.frame.send(None)
            except BaseException as ended:  # StopIteration too: drive ends the task
                entry.timer = None
                entry.frame_ended(ended)
                return True  # ``when``, left with nothing due, is dropped from the top next
            if step.__class__ is not Wait:
                entry.timer = None
                entry.run_yielded(step)
                return True
            entry.waiting = step
            deadline = when + step.seconds
            entry.deadline = deadline
            found = due.setdefault(deadline, entry)  # ``add``, inline; its timer is still this heap
            if found is not entry:
                _tie(due, deadline, found, entry)
            elif deadlines[0] is when:
                _heapreplace(deadlines, deadline)  # one sift, instead of a pop and a push
            else:  # whatever ran took ``when`` off the top (a stale deadline, or a compaction)
                _heappush(deadlines, deadline)


def _run_due(entry: Any, when: float, ready: deque[Any]) -> None:
    """Run a timer, or a cancelled filed task, due alone at ``when``; queue a tie."""
    cls = entry.__class__
    if cls is Timer:
        entry.heap = None
        entry.fire()
    elif cls is dict:
        queue_due(entry, when, ready)  # all join the ready queue, in the order filed
    else:
        entry.timer = None
        entry.drive(None, None)  # cancelled: ``drive`` throws Cancelled


def _tie(due: dict[float, Any], deadline: float, found: Any, entry: Any) -> None:
    """``entry`` is due at ``deadline`` too, after ``found``: what is due then becomes a dict."""
    if found.__class__ is dict:
        found[entry] = None
    else:
        due[deadline] = {found: None, entry: None}


def queue_due(found: Any, when: float, ready: deque[Any]) -> None:
    """What a deadline had due (a timer, a filed task, a dict of them, or None) joins ``ready``."""
    if found.__class__ is dict:
        for entry in found:
            queue_entry(entry, when, ready)
    elif found is not None:
        queue_entry(found, when, ready)


def queue_entry(entry: Any, when: float, ready: deque[Any]) -> None:
    """A timer or filed task now due joins the ready queue; it still runs only if due then."""
    if entry.__class__ is Timer:
        entry.heap = None
        ready.append(entry.fire)
        ready.append(())
    else:
        ready.append(fire_filed)
        ready.append((entry, when))


class EventLoopBackend(Backend):
    """A backend whose scheduler is a ready queue and a timer heap that it drives itself.

    It gives ``call_soon``, ``call_later`` and ``wake_later``; a subclass gives
    ``now``, ``call_soon_threadsafe``, ``start_work`` and ``wait_latch``, and a
    loop on the scheduler that calls :meth:`run_iteration` and waits as long
    as it says, waking early when another thread posts work.
    """

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

    def wake_later(self, delay: float, task: Task) -> None:
        self._timers.file(self.now() + delay, task)

    def run_iteration(self) -> float | None:
        """On the scheduler: run one iteration; the seconds the loop may wait before the next.

        That is ``0.0`` when work is ready, the time until the earliest timer
        is due, or ``None`` when no timer is set (only a post can bring work).
        A callback that raises an ``Exception`` is logged and the iteration
        goes on; any other ``BaseException`` propagates from here, and what
        was left to run runs at the next call.
        """
        self._run_once(self.now())
        if self._ready:
            return 0.0
        deadline = self._timers.next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - self.now())

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
