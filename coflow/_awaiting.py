"""Awaiting a flow from async code, in the async library of the code that awaits.

``await runner.wait()``, ``await runner.signal(fn)`` and ``async for event in
runner.events()`` wait for a :class:`Latch` that the flow's scheduler sets.
They wait the way the awaiting code's own library waits (an asyncio future on
the running loop, a ``trio.Event`` in the running trio task), whatever the
flow's backend is: a flow on the threads or gevent backend, or on an asyncio
loop in another thread, can be awaited from an asyncio or a trio task.  The
latch is set on the flow's scheduler, which hands the wake-up to the awaiting
loop through that library's thread-safe call.

On the virtual clock there is nothing to wait for: awaiting drives the clock
until the latch is set, as ``result()`` does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ._backend import Backend, Latch

_INFINITY = float("inf")


async def wait_for_latch(
    backend: Backend, latch: Latch, what: str, timeout: float | None = None
) -> bool:
    """Wait, in the calling task's async library, until ``backend``'s scheduler sets ``latch``.

    ``False`` if ``timeout`` seconds (of the awaiting library's clock) passed first.
    """
    if backend.driven_by_its_caller:
        return backend.wait_latch(latch, timeout, what)
    blocked = backend.scheduler_in_this_thread()
    if blocked is not None:
        raise RuntimeError(
            f"awaiting {what} in the thread of {blocked} would block it, and it is what "
            "must finish it: use runner.result() there, or await from a loop in another thread"
        )
    trio = sys.modules.get("trio")
    if trio is not None and _in_trio_task(trio):
        return await _wait_in_trio(trio, backend, latch, timeout)
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return await _wait_in_asyncio(asyncio, backend, latch, timeout)
    raise RuntimeError(
        f"awaiting {what} needs a running asyncio event loop or trio run in this thread"
    )


def _in_trio_task(trio: Any) -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _wait_in_asyncio(
    asyncio: Any, backend: Backend, latch: Latch, timeout: float | None
) -> bool:
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(outcome: bool = True) -> None:
        if not woken.done():  # the awaiting task may have been cancelled, or timed out
            woken.set_result(outcome)

    _when_set(backend, latch, loop.call_soon_threadsafe, wake)
    if timeout is None:
        return bool(await woken)
    timer = loop.call_later(timeout, wake, False)
    try:
        return bool(await woken)
    finally:
        timer.cancel()


async def _wait_in_trio(trio: Any, backend: Backend, latch: Latch, timeout: float | None) -> bool:
    woken = trio.Event()
    _when_set(backend, latch, trio.lowlevel.current_trio_token().run_sync_soon, woken.set)
    with trio.move_on_after(_INFINITY if timeout is None else timeout):
        await woken.wait()
        return True
    return False


def _when_set(
    backend: Backend,
    latch: Latch,
    post: Callable[[Callable[[], Any]], Any],
    wake: Callable[[], Any],
) -> None:
    """Have the scheduler ``post`` ``wake`` to the awaiting loop once ``latch`` is set."""

    def on_set() -> None:
        try:
            post(wake)
        except RuntimeError:
            pass  # the awaiting loop has closed since: nobody is left to wake

    backend.call_soon_threadsafe(latch.add_callback, on_set)
