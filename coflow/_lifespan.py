"""``Supervisor.lifespan()``: the supervisor for the life of an application.

One object, used as ``with`` (a WSGI app, a gevent or threads server) or as
``async with`` (an ASGI app's lifespan).  Entering installs the supervisor,
so a ``start`` from any thread finds it; an ``async with`` entered on a
running asyncio loop, for a supervisor with no backend of its own, also
binds it to that loop's backend, since the app's worker threads (a
framework's threadpool) have no loop and would otherwise start their flows
on the threads backend.  Leaving shuts the supervisor down with the grace
and uninstalls it.  A supervisor that was shut down opens again when a new
lifespan is entered: a test client runs an app's lifespan once per test.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._backend import resolve_backend
from ._validate import check_limit, check_optional_delay

if TYPE_CHECKING:
    from types import TracebackType

    from ._backend import Backend
    from ._supervisor import Supervisor


class Lifespan:
    """What ``supervisor.lifespan()`` gives: enter it with ``with`` or ``async with``."""

    def __init__(self, supervisor: Supervisor, grace: float | None, timeout: float | None) -> None:
        self.supervisor = supervisor
        self.grace = check_optional_delay("Supervisor.lifespan", "grace", grace)
        self.timeout = check_limit("Supervisor.lifespan", "timeout", timeout)
        #: The loop's backend this lifespan bound the supervisor to, to unbind at the end.
        self._bound: Backend | None = None

    def __repr__(self) -> str:
        return f"<Lifespan of {self.supervisor!r} grace={self.grace!r} timeout={self.timeout!r}>"

    def __enter__(self) -> Supervisor:
        if _running_loop() is not None:
            raise RuntimeError(
                "a blocking `with supervisor.lifespan()` inside a running asyncio event loop "
                "would block the loop while its flows end: use `async with supervisor.lifespan()`"
            )
        self._begin(bind=False)
        return self.supervisor

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.supervisor.shutdown(grace=self.grace, timeout=self.timeout)
        finally:
            self._end()

    async def __aenter__(self) -> Supervisor:
        self._begin(bind=True)
        return self.supervisor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.supervisor.ashutdown(grace=self.grace, timeout=self.timeout)
        finally:
            self._end()

    def _begin(self, bind: bool) -> None:
        supervisor = self.supervisor
        supervisor.install()  # first: if another is installed, nothing has changed
        supervisor.closed = False
        if bind and supervisor.backend is None and _running_loop() is not None:
            self._bound = supervisor.backend = resolve_backend("asyncio")

    def _end(self) -> None:
        supervisor = self.supervisor
        if self._bound is not None and supervisor.backend is self._bound:
            supervisor.backend = None  # the loop ends with the app: a later start picks anew
        self._bound = None
        supervisor.uninstall()


def _running_loop() -> object | None:
    """The asyncio loop running in this thread, if any (asyncio is not imported for it)."""
    asyncio = sys.modules.get("asyncio")
    return None if asyncio is None else asyncio._get_running_loop()
