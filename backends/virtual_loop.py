"""``VirtualEventLoop``: an asyncio event loop on which virtual time passes instantly.

For testing a whole async application in virtual time: its handlers, its own
timers, and flows on coflow's asyncio backend.  ``loop.time()`` reads a
:class:`VirtualClock`; where a real loop would sleep until its next timer,
this one moves the clock to that timer and runs it.  Everything else is
asyncio's own ``SelectorEventLoop``, with a selector that wraps the real one.

The rules it keeps:

- **Time moves only when the loop is idle.**  asyncio's iteration asks the
  selector to wait, up to the next timer, when no callback is ready.  The
  selector first polls the real descriptors without blocking: if one is
  ready, no time passes.  Otherwise the clock jumps to the next timer's exact
  deadline (not ``now + timeout``, which rounding can leave a hair short), and
  the loop runs what is due then.
- **Ties are FIFO.**  asyncio's timer heap compares handles by deadline alone,
  and ``heapq`` is not stable, so timers set for one instant could fire in any
  order.  Here the timers are filed in coflow's own timer heap instead (the
  one the event-loop backends share: distinct deadlines, compared as floats,
  each with what is due then in the order it was set), and asyncio's heap
  stays empty: timers due together fire in the order they were set, and no
  comparison of two timers calls Python code.  They join asyncio's FIFO
  ready queue where its iteration would take them from its own heap, after
  the callbacks already ready.
- **Executor work holds the clock.**  Each ``run_in_executor`` call (so each
  ``asyncio.to_thread``, and the asyncio backend's plain callables) counts
  from its submission until the loop has taken in its outcome, even if its
  future was cancelled meanwhile.  While one counts, an idle loop waits for
  real, with its clock still, and the thread's end wakes it through the
  loop's self-pipe.  A wait in which nothing at all happens for
  ``real_timeout`` real seconds raises ``TimeoutError`` naming the calls,
  rather than hang the test.
- **A loop that can never wake raises ``Deadlock``.**  No callback ready, no
  timer, no executor work, and no descriptor registered but the loop's own
  self-pipe: ``coflow.Deadlock``, naming each pending task, its coroutine and
  where it is suspended.  A registered socket or pipe may still wake it, so
  then the loop first waits for real, up to ``real_timeout``.

Limits: code that reads ``time.monotonic()`` or ``time.time()`` itself is not
virtual; real sockets take real time, which a timer due meanwhile does not
wait for; a thread the loop did not start (one that posts with
``call_soon_threadsafe``) is not seen.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import math
import os
import selectors
import sys
import weakref
from collections.abc import Callable, Coroutine, Mapping
from contextvars import Context
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from coflow._errors import Deadlock
from coflow._event_loop import TimerHeap
from coflow._validate import check_delay, check_time

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

_T = TypeVar("_T")
_Events = list[tuple[selectors.SelectorKey, int]]
#: asyncio's own clock resolution: a timer due within it of now runs now (as on a real loop).
_RESOLUTION = 1e-9
#: Where a task's suspension is not worth reporting: asyncio's frames and coflow's own.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path or "") + os.sep
    for path in (asyncio.__file__, sys.modules[Deadlock.__module__].__file__, __file__)
)


class VirtualClock:
    """A clock that moves only when told to: the time a :class:`VirtualEventLoop` reads."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = check_time("VirtualClock", "start", start)

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:g}>"

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` (a finite number >= 0) forward."""
        self._now += check_delay("VirtualClock.advance", "seconds", seconds)

    def jump_to(self, when: float) -> None:
        """Move the clock forward to the time ``when``; a clock never goes back."""
        when = check_time("VirtualClock.jump_to", "when", when)
        if when < self._now:
            raise ValueError(
                f"VirtualClock.jump_to: {when!r} is before now ({self._now!r}): "
                "a clock never goes back"
            )
        self._now = when


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop whose ``time()`` is a :class:`VirtualClock` it moves when idle.

    ``start`` is the clock's first reading, or ``clock`` an existing clock to
    share (not both).  ``real_timeout`` is how long, in real seconds, an idle
    loop waits for executor work or awaited I/O with nothing happening before
    it raises.
    """

    # The base class's state this subclass reads or keeps up (the same on CPython 3.10-3.13).
    _scheduled: list[asyncio.TimerHandle]
    _clock_resolution: float
    _default_executor: concurrent.futures.Executor | None
    _executor_shutdown_called: bool
    _closed: bool

    def __init__(
        self,
        start: float | None = None,
        *,
        clock: VirtualClock | None = None,
        real_timeout: float = 10.0,
    ) -> None:
        try:
            self._clock, self.real_timeout = _settings(start, clock, real_timeout)
        except (TypeError, ValueError):
            self._closed = True  # nothing was opened: the base class's __del__ has nothing to close
            raise
        #: The loop's timers, filed here rather than on asyncio's heap (``_scheduled``, left
        #: empty): distinct deadlines compared as floats, ties in the order set.
        self._timers = TimerHeap()
        #: Executor calls (and the default executor's shutdown) whose end the loop has not taken
        #: in yet, each with what it is, for the message when one runs too long.
        self._holding: dict[object, str] = {}
        self._virtual_selector = _VirtualSelector(self._when_idle)
        super().__init__(self._virtual_selector)
        self._own_descriptors = frozenset(self._virtual_selector.get_map())  # the self-pipe
        self._keep_resolution()

    def __repr__(self) -> str:
        return (
            f"<VirtualEventLoop time={self._clock.now():g} running={self.is_running()} "
            f"closed={self.is_closed()}>"
        )

    @property
    def clock(self) -> VirtualClock:
        """The virtual clock this loop reads (and moves when idle)."""
        return self._clock

    def time(self) -> float:
        return self._clock.now()

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        timer = _Timer(when, callback, args, self, context)
        self._timers.add(when, timer)
        return timer

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[Unpack[_Ts]], _T],
        *args: Unpack[_Ts],
    ) -> asyncio.Future[_T]:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if self._default_executor is None:
                self._default_executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="asyncio"
                )
            executor = self._default_executor
        work = executor.submit(func, *args)
        future = asyncio.wrap_future(work, loop=self)
        self._holding[work] = f"{_describe_call(func)} (started at virtual time {self.time():g})"
        # Added after wrap_future's own callback, so the outcome is posted to the loop first.
        work.add_done_callback(self._release_soon)
        return future

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # The threads the executor joins hold the clock too: on 3.12+ the shutdown's own
        # timeout is a timer, which a clock jumping meanwhile would fire at once.
        token = object()
        self._holding[token] = "the default executor's shutdown"
        try:
            if sys.version_info >= (3, 12):
                await super().shutdown_default_executor(timeout)
            else:
                await super().shutdown_default_executor()
        finally:
            del self._holding[token]

    def close(self) -> None:
        super().close()
        self._timers = TimerHeap()  # as asyncio's close clears its heap

    # -- internals -------------------------------------------------------------------

    def _process_events(self, event_list: Any) -> None:
        # Where asyncio's iteration takes the timers due from its heap, right after the I/O
        # events: the same place in the iteration, from this loop's own timers.
        super()._process_events(event_list)  # type: ignore[misc]
        ready = self._ready  # type: ignore[attr-defined]
        for _when, timer in self._timers.take_due(self._clock.now() + self._clock_resolution):
            ready.append(timer)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # Called by every cancel, filed or not: taking off a timer that is no longer on the
        # heap (it is due, or ran) does nothing.
        self._timers.discard(handle.when(), handle)

    def _release_soon(self, work: concurrent.futures.Future[Any]) -> None:
        """In the worker thread: once the loop has its outcome, ``work`` stops holding the clock."""
        try:
            self.call_soon_threadsafe(self._holding.pop, work, None)
        except RuntimeError:  # the loop is closed: nothing waits for the work any more
            pass

    def _when_idle(self, real: selectors.BaseSelector) -> _Events:
        """What the selector does when no callback is ready and no descriptor is ready."""
        if self._holding:
            events = real.select(self.real_timeout)
            if not events:
                raise TimeoutError(self._held_too_long())
            return events
        deadline = self._timers.next_deadline()
        if deadline is None:
            awaited = self._awaited_descriptors()
            if awaited:
                events = real.select(self.real_timeout)
                if events:
                    return events
            raise Deadlock(self._deadlock_message(awaited))
        if deadline > self._clock.now():
            self._clock.jump_to(deadline)
            self._keep_resolution()
        return []

    def _keep_resolution(self) -> None:
        # asyncio runs the timers due before ``time() + resolution``; far from 0, a float's
        # step grows past 1 ns, and a timer due exactly now would then never count as due.
        self._clock_resolution = max(_RESOLUTION, math.ulp(self._clock.now()))

    def _awaited_descriptors(self) -> list[str]:
        awaited = []
        for descriptor, key in self._virtual_selector.get_map().items():
            if descriptor not in self._own_descriptors:
                ways = [way for way, mask in _WAYS if key.events & mask]
                awaited.append(f"descriptor {descriptor} ({' and '.join(ways)})")
        return awaited

    def _held_too_long(self) -> str:
        return (
            f"executor work held the virtual clock for {self.real_timeout:g} s of real time "
            f"with nothing happening on the loop: {'; '.join(self._holding.values())}. "
            "Virtual time cannot pass while it runs; a hung thread is a bug, slow work wants "
            "a longer real_timeout (virtual_loop(real_timeout=...))"
        )

    def _deadlock_message(self, awaited: list[str]) -> str:
        tasks = sorted(asyncio.all_tasks(self), key=lambda task: task.get_name())
        pending = "; ".join(_describe_task(task) for task in tasks) or "none"
        if awaited:
            why = f"no I/O arrived on {', '.join(awaited)} in {self.real_timeout:g} s of real time"
        else:
            why = "no I/O is awaited"
        return (
            f"the virtual event loop can never wake, at virtual time {self.time():g}: no callback "
            f"is ready, no timer is set, no executor work runs, and {why}. Pending tasks: {pending}"
        )


_WAYS = (("read", selectors.EVENT_READ), ("write", selectors.EVENT_WRITE))


def _settings(
    start: float | None, clock: VirtualClock | None, real_timeout: float
) -> tuple[VirtualClock, float]:
    if clock is None:
        clock = VirtualClock(0.0 if start is None else start)
    elif start is not None:
        raise TypeError("VirtualEventLoop: give start or clock, not both")
    elif not isinstance(clock, VirtualClock):
        raise TypeError(f"VirtualEventLoop: clock must be a VirtualClock, got {clock!r}")
    real_timeout = check_delay("VirtualEventLoop", "real_timeout", real_timeout)
    if not real_timeout > 0:
        raise ValueError("VirtualEventLoop: real_timeout must be more than 0 seconds")
    return clock, real_timeout


class _Timer(asyncio.TimerHandle):
    """A timer handle that is equal only to itself, as the timer heap files it.

    asyncio's handles hash by deadline and compare by deadline, callback and
    arguments: a thousand timers due at one instant would share one hash.
    """

    __slots__ = ()
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector: it polls the real one, and leaves any waiting to ``when_idle``."""

    def __init__(self, when_idle: Callable[[selectors.BaseSelector], _Events]):
        self._real = selectors.DefaultSelector()
        self._when_idle = when_idle

    def select(self, timeout: float | None = None) -> _Events:
        # asyncio asks for 0 when a callback is ready, else for None: its own heap is empty.
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        return self._when_idle(self._real)

    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> Any:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> Any:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> Any:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


def _describe_call(func: Callable[..., Any]) -> str:
    # asyncio.to_thread(fn, ...) submits functools.partial(context.run, fn, ...).
    if (
        isinstance(func, functools.partial)
        and isinstance(getattr(func.func, "__self__", None), contextvars.Context)
        and func.args
    ):
        return f"asyncio.to_thread({_name(func.args[0])})"
    return f"run_in_executor({_name(func)})"


def _name(func: Any) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__qualname__", None) or repr(func)


def _describe_task(task: asyncio.Task[Any]) -> str:
    """``'Task-2' waiter() suspended at test_app.py:12, awaiting Event.wait()``, as known."""
    coro = task.get_coro()
    described = f"{task.get_name()!r} {getattr(coro, '__qualname__', repr(coro))}()"
    where = None  # the innermost frame outside asyncio, and what it awaits
    awaited: Any = coro
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        inner = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        if where is None or not frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
            where = (frame, inner)
        awaited = inner
    if where is not None:
        frame, inner = where
        described += f" suspended at {os.path.basename(frame.f_code.co_filename)}"
        described += f":{frame.f_lineno} in {frame.f_code.co_name}"
        if inner is not None:
            described += f", awaiting {_awaitable_name(inner)}"
    return described


def _awaitable_name(awaitable: Any) -> str:
    name = getattr(awaitable, "__qualname__", None)
    if name is not None:
        return f"{name}()"
    if type(awaitable).__name__ == "FutureIter":  # what awaiting an asyncio Future leaves
        return "a Future"
    return type(awaitable).__name__


def run(main: Coroutine[Any, Any, _T], loop: VirtualEventLoop) -> _T:
    """``asyncio.run(main)`` on ``loop``, then ``loop`` closed (Python 3.10 has no loop_factory)."""
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during run_virtual() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


class Host(Protocol):
    """What runs a :class:`HostedEventLoop`: the virtual clock's backend (its time, its timers)."""

    def now(self) -> float: ...

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None: ...

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...


class _HostClock(VirtualClock):
    """The host's clock, read through a weak reference (the host owns the loop, not the reverse)."""

    __slots__ = ("_host",)

    def __init__(self, host: Host) -> None:
        super().__init__(host.now())
        self._host = weakref.ref(host)

    def now(self) -> float:
        host = self._host()
        return self._now if host is None else host.now()

    def jump_to(self, when: float) -> None:
        raise RuntimeError("a hosted event loop's time is its host's: it never moves it itself")


class HostedEventLoop(VirtualEventLoop):
    """A virtual event loop run by another scheduler, one iteration at a time.

    The virtual clock's backend runs async work on it: the loop's time is the
    backend's, each asyncio timer is a timer of the backend's (so ties with
    the backend's own timers fire in the order set), and new ready callbacks
    post one iteration to the backend's ready queue.  The loop never waits
    and never moves time; while executor work it started runs, ``holding()``
    says so, and the backend waits for it instead of moving time.
    """

    def __init__(self, host: Host, real_timeout: float = 10.0) -> None:
        super().__init__(clock=_HostClock(host), real_timeout=real_timeout)
        self._host = weakref.ref(host)
        #: An iteration is posted to the host, or running: a new callback needs no other.
        self._iteration_due = False
        #: Deadlines a host timer is set for (one per distinct asyncio deadline).
        self._armed: set[float] = set()
        #: The tasks running work for the host, so a BaseException one ends with stays its own.
        self._work: set[asyncio.Future[Any]] = set()

    def call_soon(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: Context | None = None,
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        if not self._iteration_due:
            self._post_iteration()
        return handle

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: Context | None = None,
    ) -> asyncio.Handle:
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        self._with_host(lambda host: host.call_soon_threadsafe(self._iterate))
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = super().call_at(when, callback, *args, context=context)
        if when not in self._armed:
            self._armed.add(when)
            self._with_host(
                lambda host: host.call_later(max(0.0, when - host.now()), self._fire, when)
            )
        return timer

    def start_work(
        self, awaitable: Any, done: Callable[[Any, BaseException | None], Any]
    ) -> asyncio.Future[Any]:
        """Run ``awaitable`` as a task; ``done(value, error)`` goes to the host once it ends."""
        task: asyncio.Future[Any] = asyncio.ensure_future(awaitable, loop=self)
        self._work.add(task)

        def ended(task: asyncio.Future[Any]) -> None:
            self._work.discard(task)
            self._with_host(lambda host: host.call_soon(done, *_outcome(task)))

        task.add_done_callback(ended)
        return task

    def holding(self) -> str | None:
        """The executor work the host must wait for before time may move, if any."""
        return "; ".join(self._holding.values()) or None

    def pending_tasks(self) -> str:
        """The loop's pending tasks, as a ``Deadlock`` message names them."""
        tasks = sorted(asyncio.all_tasks(self), key=lambda task: task.get_name())
        return "; ".join(_describe_task(task) for task in tasks)

    def _with_host(self, call: Callable[[Host], Any]) -> None:
        host = self._host()
        if host is not None:
            call(host)

    def _fire(self, when: float) -> None:
        self._armed.discard(when)
        self._iterate()

    def _iterate(self) -> None:
        """On the host: run one iteration of the loop (the timers due now, then what is ready)."""
        if self.is_closed() or self.is_running():
            return  # closed meanwhile; or posted again from inside the iteration that runs
        self._iteration_due = True
        self._keep_resolution()
        outer = asyncio._get_running_loop()  # a test's own loop may be driving the clock
        asyncio._set_running_loop(None)
        try:
            self.stop()  # run_forever then runs exactly one iteration
            self.run_forever()
        except (KeyboardInterrupt, SystemExit) as error:
            if not any(_ended_with(task, error) for task in self._work):
                raise  # not a work task's own: it is the process's
        finally:
            asyncio._set_running_loop(outer)
            self._iteration_due = False
        if self._ready:  # type: ignore[attr-defined]
            self._post_iteration()  # what the iteration made ready runs in the next one

    def _post_iteration(self) -> None:
        self._iteration_due = True
        self._with_host(lambda host: host.call_soon(self._iterate))


def _outcome(task: asyncio.Future[Any]) -> tuple[Any, BaseException | None]:
    """A finished work task's ``(value, error)``: a cancellation is its error too."""
    if task.cancelled():
        return None, asyncio.CancelledError()
    error = task.exception()
    return (None, error) if error is not None else (task.result(), None)


def _ended_with(task: asyncio.Future[Any], error: BaseException) -> bool:
    return task.done() and not task.cancelled() and task.exception() is error
