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

For an application, a supervisor is also the flows' lifespan: ``shutdown()``
stops them all with a grace and waits until their cleanup has run (then it
starts no more), ``lifespan()`` installs it for the life of the app and shuts
it down at the end (``_lifespan``), and ``start(flow, key=...)`` gets the
runner already running for a key or starts one (one flow per book).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from . import _ambient
from ._ambient import Supervising
from ._errors import FlowException, FlowTimeout
from ._instrument import Instrument, InstrumentSet
from ._lifespan import Lifespan
from ._location import add_note
from ._missing import MISSING
from ._runner import start as coflow_start
from ._shutdown import (
    await_ended,
    refuse_awaiting_here,
    refuse_blocking_here,
    still_running,
    wait_ended,
)
from ._validate import check_choice, check_limit, check_optional_delay

if TYPE_CHECKING:
    from types import TracebackType

    from ._backend import Backend
    from ._runner import Runner

logger = logging.getLogger("coflow")

RESTART_POLICIES = ("permanent", "transient", "temporary")



class Supervisor(Supervising):
    """Restarts the flows started under it when they fail (see the module docstring).

    ``restart``: ``"transient"`` restarts after a failure, ``"permanent"``
    also after a normal end, ``"temporary"`` never.  ``backend`` is used by
    ``start`` calls that name none.  ``instruments`` see the steps of the
    runners it supervises and of their child flows (``coflow.Instrument``).
    """

    def __init__(
        self,
        *,
        backend: Backend | str | None = None,
        restart: str = "transient",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        instruments: Iterable[Instrument] = (),
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
        #: The runners it supervises, each with its key (None: started with none); ordered,
        #: so children() lists oldest first.
        self._runners: dict[Runner, Hashable] = {}
        #: The runner of each key, until it ends for good (``forget``).
        self._keyed: dict[Hashable, Runner] = {}
        #: Reentrant: a keyed start holds it across ``coflow.start``, which adopts the runner.
        self._lock = threading.RLock()
        #: True once shut down: it starts no more flows, until a new ``lifespan()`` opens it.
        self.closed = False
        #: The instruments its runners and their children report to (``add_instrument``).
        self.instrument_set = InstrumentSet(instruments)

    def __repr__(self) -> str:
        return (
            f"<Supervisor restart={self.restart!r} max_restarts={self.max_restarts} "
            f"max_seconds={self.max_seconds:g} children={len(self._runners)}>"
        )

    # -- the public API --------------------------------------------------------

    def add_instrument(self, instrument: Instrument) -> None:
        """Have the runners it starts or restarts from now on, and their children, report to
        ``instrument`` (from any thread)."""
        self.instrument_set.add(instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        """No hook of ``instrument`` is called for its runners after this returns."""
        self.instrument_set.remove(instrument)

    def children(self) -> list[Runner]:
        """The runners it supervises that have not ended, oldest first."""
        with self._lock:
            return list(self._runners)

    def stop(self, grace: float | None = None) -> None:
        """Stop every runner it supervises (none of them is restarted), each with ``grace``."""
        grace = check_optional_delay("Supervisor.stop", "grace", grace)
        for runner in self.children():
            runner.stop(grace)

    def shutdown(self, grace: float | None = None, timeout: float | None = None) -> None:
        """Stop every runner with ``grace``, then block until all have ended; start no more.

        Ended means their cleanup has run.  Past ``timeout`` seconds it raises
        ``FlowTimeout`` saying how many still run.  On a scheduler that runs
        its flows (the asyncio loop, the gevent hub) it refuses with
        ``RuntimeError``, since waiting there would stop them ending: await
        ``ashutdown()`` instead.
        """
        what = f"shutdown of {self!r}"
        grace, timeout = self._check_limits("shutdown", grace, timeout)
        refuse_blocking_here(self._backends(), what)
        running = wait_ended(self._close_and_stop(grace), timeout)
        if running:
            raise FlowTimeout(still_running(what, running), timeout or 0.0)

    async def ashutdown(self, grace: float | None = None, timeout: float | None = None) -> None:
        """``shutdown()`` for async code: awaits the runners' end, in the caller's library."""
        what = f"shutdown of {self!r}"
        grace, timeout = self._check_limits("ashutdown", grace, timeout)
        refuse_awaiting_here(self._backends(), what)
        running = await await_ended(self._close_and_stop(grace), timeout)
        if running:
            raise FlowTimeout(still_running(what, running), timeout or 0.0)

    def lifespan(self, grace: float | None = 5.0, timeout: float | None = None) -> Lifespan:
        """The supervisor for the life of an app: ``with`` or ``async with`` (``_lifespan``).

        Entering installs it (and, entered with ``async with`` on a running
        asyncio loop, binds it to the loop's backend unless it has one);
        leaving shuts it down with ``grace`` and ``timeout``, and uninstalls it.
        """
        return Lifespan(self, grace, timeout)

    def start(
        self,
        flow: Any,
        *,
        key: Hashable = None,
        initial_state: Any = MISSING,
        notify: Any = None,
        backend: Backend | str | None = None,
        name: str | None = None,
    ) -> Runner:
        """``coflow.start`` under this supervisor; with a ``key``, get-or-start.

        With a key, the runner already running for it is returned, else one is
        started (named ``str(key)`` unless named) and kept for the key until it
        ends for good; safe from any number of threads at once.  A runner that
        has ended, or is being stopped, is replaced by a new one.
        """
        if key is None:
            return coflow_start(
                flow,
                initial_state=initial_state,
                notify=notify,
                backend=backend,
                name=name,
                supervisor=self,
            )
        _check_key("start", key)
        with self._lock:  # held while starting, which posts to the scheduler, never waits on it
            known = self._keyed.get(key)
            if known is not None and _live(known):
                return known
            runner = coflow_start(
                flow,
                initial_state=initial_state,
                notify=notify,
                backend=backend,
                name=str(key) if name is None else name,
                supervisor=self,
            )
            if runner in self._runners:  # else it has ended already: nothing to keep
                self._runners[runner] = key
                self._keyed[key] = runner
            return runner

    def get(self, key: Hashable) -> Runner | None:
        """The runner running for ``key`` (started with ``start(flow, key=key)``), else None."""
        _check_key("get", key)
        with self._lock:
            runner = self._keyed.get(key)
        return runner if runner is not None and _live(runner) else None

    def install(self) -> Supervisor:
        """Make this the supervisor of every ``start`` that finds no other, in every thread."""
        _ambient.install(self)
        return self

    def uninstall(self) -> None:
        """Undo ``install()``; its runners stay supervised."""
        _ambient.uninstall(self)

    def __enter__(self) -> Supervisor:
        _ambient.enter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _ambient.leave(self)

    # -- used by the runner ------------------------------------------------------

    def check_open(self) -> None:
        """A supervisor that was shut down starts no more flows: ``RuntimeError`` naming it."""
        if self.closed:
            raise RuntimeError(
                f"{self!r} has been shut down and starts no more flows: "
                "start them under another supervisor, or enter its lifespan() again"
            )

    def adopt(self, runner: Runner) -> None:
        """Supervise ``runner`` (before it first runs)."""
        links = runner.ensure_links()
        links.supervisor = self
        links.initial_state = runner.state
        with self._lock:
            self.check_open()  # a shutdown may have begun since ``find_supervisor``
            self._runners[runner] = None

    def forget(self, runner: Runner) -> None:
        """``runner`` has ended for good: so has its key's hold on it."""
        with self._lock:
            key = self._runners.pop(runner, None)
            if key is not None and self._keyed.get(key) is runner:
                del self._keyed[key]

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

    # -- helpers ---------------------------------------------------------------

    def _check_limits(
        self, method: str, grace: float | None, timeout: float | None
    ) -> tuple[float | None, float | None]:
        where = f"Supervisor.{method}"
        return check_optional_delay(where, "grace", grace), check_limit(where, "timeout", timeout)

    def _backends(self) -> list[Backend]:
        """The backends its flows run on, and its own: where a shutdown must not block."""
        found: dict[Backend, None] = {runner.backend: None for runner in self.children()}
        own = self.backend
        if own is not None and not isinstance(own, str):
            found[own] = None
        return list(found)

    def _close_and_stop(self, grace: float | None) -> list[Runner]:
        """Start no more, and stop what runs: the runners to wait for."""
        with self._lock:
            self.closed = True
            runners = list(self._runners)
        for runner in runners:
            runner.stop(grace)
        return runners

    def _give_up(self, runner: Runner, error: BaseException | None) -> BaseException:
        limit = f"{self.max_restarts} restarts within {self.max_seconds:g}s"
        if error is None:
            error = FlowException(f"flow {runner.name!r} kept ending; the supervisor gave up")
        add_note(error, f"coflow: the supervisor gave up on flow {runner.name!r} after {limit}")
        logger.error("supervisor gave up on flow %r after %s", runner.name, limit, exc_info=error)
        return error


def _check_key(method: str, key: object) -> None:
    try:
        hash(key)
    except TypeError as error:
        raise TypeError(f"Supervisor.{method}: key must be hashable, got {key!r}") from error


def _live(runner: Runner) -> bool:
    """Whether a key's runner is still the one to give: running, and not being stopped."""
    return runner.status == "running" and not runner.ensure_links().stop_asked
