"""``AsyncioBackend``: flows on an asyncio event loop, for async codebases.

The scheduler's callbacks and timers are the loop's own (``call_soon``,
``call_later``); other threads post with ``call_soon_threadsafe``.  Work given
to ``run``, ``parallel`` or ``race`` becomes a task: a coroutine function (or
a ``functools.partial`` of one) runs on the loop; any other callable runs in
the loop's default executor, so it never blocks the loop, and an awaitable it
returns is then awaited on the loop.  Cancelling work is ``Task.cancel()``,
and the step waits until the task has really finished.

One backend per loop: ``backend="asyncio"``, or no backend inside a running
loop, gives the running loop's.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from coflow._backend import Backend, Latch, wait_in_thread


class AsyncioBackend(Backend):
    """The scheduler runs on ``loop`` (by default, the running loop)."""

    name = "asyncio"

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            loop = _running_loop("AsyncioBackend()")
        elif not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"AsyncioBackend: loop must be an asyncio event loop, got {loop!r}")
        self.loop = loop

    def __repr__(self) -> str:
        return f"<AsyncioBackend loop={self.loop!r}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return self.loop.time()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon(callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback, *args)

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> asyncio.Task[Any]:
        report = _Report(done)
        if _is_coroutine_function(fn):
            task = self.loop.create_task(_reported(fn, args, report))
        else:
            task = self.loop.create_task(_reported(_in_executor, (self.loop, fn, args), report))
        report.task = task
        task.add_done_callback(report, context=report.context)
        return task

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        if asyncio._get_running_loop() is self.loop:
            raise RuntimeError(
                f"waiting for {what} here would block the event loop that runs it: "
                "use `await runner.wait()` in async code"
            )
        return wait_in_thread(self, latch, timeout)

    def scheduler_here(self) -> str | None:
        return "the asyncio event loop" if asyncio._get_running_loop() is self.loop else None


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, with a fast answer for plain functions (most work)."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


async def _in_executor(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """A plain callable, run off the loop; an awaitable it returns is awaited on the loop."""
    value = await loop.run_in_executor(None, fn, *args)
    if inspect.isawaitable(value):
        value = await value
    return value


class _Report:
    """How a work task reports its end: ``done(value, error)``, exactly once.

    The task's coroutine reports as it finishes, before the task is done, so the
    common end costs no loop callback; the done callback it then removes covers
    a task cancelled before it ever ran.  ``done`` runs in a copy of the context
    the work was started in, as a done callback would: what the work sets in
    its own context stays there, as with ``await task``.
    """

    __slots__ = ("context", "done", "task")
    task: asyncio.Task[Any]

    def __init__(self, done: Callable[[Any, BaseException | None], Any]) -> None:
        self.done = done
        self.context = contextvars.copy_context()

    def finished(self, value: Any, error: BaseException | None) -> None:
        self.task.remove_done_callback(self)
        self.context.run(self.done, value, error)

    def __call__(self, task: asyncio.Task[Any]) -> None:
        """The task ended without running its coroutine: cancelled before it started."""
        self.done(None, asyncio.CancelledError())


async def _reported(
    fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], report: _Report
) -> None:
    """Await ``fn(*args)`` and report its outcome: whatever ends the work, the task ends normally.

    asyncio re-raises a task's ``KeyboardInterrupt`` or ``SystemExit`` out of
    the loop, which would stop every flow on it; work that raises one only
    fails its attempt (SPEC §9), like a ``CancelledError`` nobody asked for.
    ``fn`` is called inside the task, so a task cancelled before it ran makes
    no coroutine that would never be awaited.
    """
    try:
        value = await fn(*args)
    except BaseException as error:
        report.finished(None, error)
    else:
        report.finished(value, None)


def _running_loop(who: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{who} needs a running event loop: call it from async code, "
            "or pass the loop (AsyncioBackend(loop=...))"
        ) from None


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncioBackend]
_by_loop = weakref.WeakKeyDictionary()


def default_backend() -> AsyncioBackend:
    """What ``backend="asyncio"`` gives: the running loop's backend, one per loop."""
    loop = _running_loop('backend="asyncio"')
    backend = _by_loop.get(loop)
    if backend is None:
        backend = _by_loop[loop] = AsyncioBackend(loop)
    return backend
