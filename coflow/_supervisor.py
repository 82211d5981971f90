"""``Supervisor``: restarts the flows it watches when they fail, within a limit.

A supervised runner that ends is judged by its supervisor: restarted from its
initial state on the same ``Runner`` handle, or let end.  Restarts within
``max_seconds`` are counted on the runner's backend clock (so virtual-time
tests are exact); more than ``max_restarts`` of them gives up, and the runner
ends failed.  Each restart is posted through the backend, so a flow that
fails at once on every start neither recurses nor spins: it runs out of
restarts.

``start`` finds a supervisor the way a running Caravela.Flow.Supervisor is
found by every ``start``: the one named with ``supervisor=``, else the one
of the innermost ``with supervisor:`` block (a context variable, so asyncio
tasks created inside inherit it), else the installed one.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from typing import TYPE_CHECKING

from ._errors import FlowException
from ._location import add_note
from ._missing import MISSING
from ._validate import check_choice

if TYPE_CHECKING:
    from types import TracebackType

    from ._backend import Backend
    from ._runner import Runner

logger = logging.getLogger("coflow")

RESTART_POLICIES = ("permanent", "transient", "temporary")

#: The supervisors of the enclosing ``with`` blocks, innermost last.
_AMBIENT: contextvars.ContextVar[tuple[Supervisor, ...]] = contextvars.ContextVar(
    "coflow_supervisors", default=()
)
_installed: Supervisor | None = None
_INSTALLING = threading.Lock()


class Supervisor:
    """Restarts the flows started under it when they fail (see the module docstring).

    ``restart``: ``"transient"`` restarts after a failure, ``"permanent"``
    also after a normal end, ``"temporary"`` never.  ``backend`` is used by
    ``start`` calls that name none.
    """

    def __init__(
        self,
        *,
        backend: Backend | str | None = None,
        restart: str = "transient",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> None:
        check_choice("Supervisor", "restart", restart, RESTART_POLICIES)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(f"Supervisor: max_restarts must be an int, got {max_restarts!r}")
        if max_restarts < 0:
            raise ValueError(f"Supervisor: max_restarts must be >= 0, got {max_restarts!r}")
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)):
            raise TypeError(f"Supervisor: max_seconds must be a number, got {max_seconds!r}")
        if not (max_seconds > 0 and math.isfinite(max_seconds)):
            raise ValueError(
                f"Supervisor: max_seconds must be a finite number > 0, got {max_seconds!r}"
            )
        self.backend = backend
        self.restart = restart
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self._runners: dict[Runner, None] = {}  # ordered, so children() lists oldest first
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<Supervisor restart={self.restart!r} max_restarts={self.max_restarts} "
            f"max_seconds={self.max_seconds:g} children={len(self._runners)}>"
        )

    # -- the public API --------------------------------------------------------

    def children(self) -> list[Runner]:
        """The runners it supervises that have not ended, oldest first."""
        with self._lock:
            return list(self._runners)

    def stop(self) -> None:
        """Stop every runner it supervises (none of them is restarted)."""
        for runner in self.children():
            runner.stop()

    def install(self) -> Supervisor:
        """Make this the supervisor of every ``start`` that finds no other, in every thread."""
        global _installed
        with _INSTALLING:
            if _installed is not None and _installed is not self:
                raise RuntimeError(
                    f"another supervisor is installed ({_installed!r}); uninstall it first"
                )
            _installed = self
        return self

    def uninstall(self) -> None:
        """Undo ``install()``; its runners stay supervised."""
        global _installed
        with _INSTALLING:
            if _installed is self:
                _installed = None

    def __enter__(self) -> Supervisor:
        _AMBIENT.set((*_AMBIENT.get(), self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        ambient = _AMBIENT.get()
        if not ambient or ambient[-1] is not self:
            raise RuntimeError("Supervisor blocks must be left in the order they were entered")
        _AMBIENT.set(ambient[:-1])

    # -- used by the runner ------------------------------------------------------

    def adopt(self, runner: Runner) -> None:
        """Supervise ``runner`` (before it first runs)."""
        links = runner.ensure_links()
        links.supervisor = self
        links.initial_state = runner.state
        with self._lock:
            self._runners[runner] = None

    def forget(self, runner: Runner) -> None:
        """``runner`` has ended for good."""
        with self._lock:
            self._runners.pop(runner, None)

    def judge(
        self, runner: Runner, error: BaseException | None
    ) -> tuple[bool, BaseException | None]:
        """Whether ``runner``, ended with ``error`` (None: normally), restarts; and why.

        Returns ``(True, reason)`` to restart, else ``(False, error)``: the
        error it ends with, which is a new one when the supervisor gives up
        on a flow that ended normally.
        """
        if self.restart == "temporary" or (error is None and self.restart == "transient"):
            return False, error
        links = runner.ensure_links()
        now = runner.backend.now()
        times = links.restart_times
        if times is None:
            times = links.restart_times = []
        while times and now - times[0] > self.max_seconds:
            del times[0]  # a handful at most: max_restarts of them
        if len(times) >= self.max_restarts:
            return False, self._give_up(runner, error)
        times.append(now)
        logger.warning(
            "flow %r %s; restarting it (restart %d)",
            runner.name,
            "ended" if error is None else "failed",
            links.restarts + 1,
            exc_info=error,
        )
        return True, error

    def _give_up(self, runner: Runner, error: BaseException | None) -> BaseException:
        limit = f"{self.max_restarts} restarts within {self.max_seconds:g}s"
        if error is None:
            error = FlowException(f"flow {runner.name!r} kept ending; the supervisor gave up")
        add_note(error, f"coflow: the supervisor gave up on flow {runner.name!r} after {limit}")
        logger.error("supervisor gave up on flow %r after %s", runner.name, limit, exc_info=error)
        return error


def find_supervisor(given: object) -> Supervisor | None:
    """The supervisor for a ``start``: see the module docstring."""
    if given is MISSING:
        ambient = _AMBIENT.get()
        return ambient[-1] if ambient else _installed
    if given is None or isinstance(given, Supervisor):
        return given
    raise TypeError(f"coflow.start: supervisor must be a Supervisor or None, got {given!r}")
