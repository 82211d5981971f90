"""Waiting until runners have ended, for ``Supervisor.shutdown`` and ``ashutdown``.

A runner that was stopped has ended once its cleanup has run: its end sets a
latch on its scheduler.  The blocking wait waits on each runner's backend as
``result()`` does (so the virtual clock is driven and a gevent caller blocks
only its greenlet); the async wait awaits as ``runner.wait()`` does.  Neither
reads the runner's outcome: a flow that fails while it stops is reported
where its failure always is, not swallowed by a shutdown that looked at it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._awaiting import wait_for_latch
from ._backend import Latch

if TYPE_CHECKING:
    from ._backend import Backend
    from ._runner import Runner

#: The names a ``FlowTimeout`` of a shutdown lists before it says how many more there are.
NAMES_SHOWN = 5


def refuse_blocking_here(backends: Iterable[Backend], what: str) -> None:
    """Blocking here would stop a scheduler that must end the flows: say to await instead."""
    for backend in backends:
        scheduler = backend.scheduler_here()
        if scheduler is not None:
            raise RuntimeError(
                f"{what} here would block {scheduler}, which runs its flows: "
                "use `await supervisor.ashutdown()` (or `async with supervisor.lifespan()`) "
                "in async code"
            )


def refuse_awaiting_here(backends: Iterable[Backend], what: str) -> None:
    """Awaiting in the thread of a scheduler that needs it (the gevent hub's) would hang it."""
    for backend in backends:
        blocked = backend.scheduler_in_this_thread()
        if blocked is not None:
            raise RuntimeError(
                f"awaiting {what} in the thread of {blocked} would block it, and it is what "
                "must end the flows: use supervisor.shutdown() there"
            )


def wait_ended(runners: list[Runner], timeout: float | None) -> list[Runner]:
    """Block until every runner has ended, or ``timeout`` passed; those still running.

    ``timeout`` is counted on each backend's own clock where its caller drives
    it (virtual seconds on the virtual clock), else in real seconds.
    """
    started: dict[Backend, float] = {}
    for runner in runners:
        if runner.status != "running":
            continue
        backend = runner.backend
        clock = _clock_of(backend)
        remaining = None
        if timeout is not None:
            elapsed = clock() - started.setdefault(backend, clock())
            remaining = max(0.0, timeout - elapsed)
        if not backend.wait_latch(_ended(runner), remaining, f"flow {runner.name!r}"):
            break
    return [runner for runner in runners if runner.status == "running"]


async def await_ended(runners: list[Runner], timeout: float | None) -> list[Runner]:
    """``wait_ended``, awaited in the calling task's library; ``timeout`` on its clock."""
    clock = _async_clock()
    began = clock()
    for runner in runners:
        if runner.status != "running":
            continue
        remaining = None if timeout is None else max(0.0, timeout - (clock() - began))
        what = f"flow {runner.name!r}"
        if not await wait_for_latch(runner.backend, _ended(runner), what, remaining):
            break
    return [runner for runner in runners if runner.status == "running"]


def still_running(what: str, running: list[Runner]) -> str:
    """``what``, with how many flows are still running and the first few names."""
    count = len(running)
    names = ", ".join(repr(runner.name) for runner in running[:NAMES_SHOWN])
    if count > NAMES_SHOWN:
        names += f" and {count - NAMES_SHOWN} more"
    return f"{what} ({count} flow{'s' if count != 1 else ''} still running: {names})"


def _ended(runner: Runner) -> Latch:
    """A latch its scheduler sets once ``runner`` has ended (at once if it has)."""
    latch = Latch()
    runner.backend.call_soon_threadsafe(runner.when_ended, latch.set)
    return latch


def _clock_of(backend: Backend) -> Callable[[], float]:
    # A clock its caller drives is read by that caller, here; another backend's only
    # on its scheduler, so a real one is timed by this thread's monotonic clock.
    return backend.now if backend.driven_by_its_caller else time.monotonic


def _async_clock() -> Callable[[], float]:
    """The awaiting library's clock: the running asyncio loop's (virtual on a virtual loop)."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass  # not in a trio task: asyncio's, below
        else:
            return trio.current_time  # type: ignore[no-any-return]
    asyncio = sys.modules.get("asyncio")
    loop = None if asyncio is None else asyncio._get_running_loop()
    return time.monotonic if loop is None else loop.time
