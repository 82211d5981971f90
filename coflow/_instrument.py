"""Process-wide hooks into the core: ``Instrument``, where instruments are installed, and
the registry of live runners that ``coflow.inspect()`` walks.

An instrument is seen only by *instrumented* runners: those started (or
restarted) while an instrument is installed process-wide or on their
supervisor.  Their tasks are ``_reporting.ReportingTask``: a step loop of its
own that reports each step, so a runner nobody instruments runs the plain
``Task.drive`` and pays nothing.  Hooks run on the runner's scheduler, one at a
time; a hook that raises is logged and removed, and the flow goes on.

``started_hooks`` holds callables that ``launch`` calls with each runner it
makes (a root started with ``coflow.start`` or a child of ``call`` or
``spawn``), before the runner's first step is posted.  With none installed
they cost one truthiness check per start.  Install with ``append`` and
remove with ``remove``: the list is never rebound.  A hook runs on the thread
that starts the runner (for a child, the scheduler's) and must not raise.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = [
    "GLOBAL",
    "WORK_TYPES",
    "Instrument",
    "InstrumentSet",
    "add_instrument",
    "remove_instrument",
    "report",
    "started_hooks",
]

logger = logging.getLogger("coflow")

#: Called with each runner ``launch`` makes; the pytest plugin tracks runners with it.
started_hooks: list[Callable[[Runner], None]] = []


class Instrument:
    """The hooks a flow reports to; subclass it and override the ones you need.

    Every hook gets the runner first and the backend's time ``now`` last, and
    runs on the runner's scheduler: keep it short, and never block in it.
    """

    def runner_started(self, runner: Runner, now: float) -> None:
        """A runner was made, before its first step (a root, or a child of call/spawn)."""

    def runner_ended(self, runner: Runner, now: float) -> None:
        """The runner ended: its ``status`` and ``error`` say how."""

    def step_began(self, runner: Runner, step: Any, now: float) -> None:
        """A flow yielded ``step``; it runs now."""

    def step_blocked(self, runner: Runner, step: Any, now: float) -> None:
        """``step`` suspends the flow (a wait, work, a join, a child call, ...)."""

    def step_woken(self, runner: Runner, step: Any, now: float) -> None:
        """The flow blocked in ``step`` resumes."""

    def step_ended(
        self, runner: Runner, step: Any, error: BaseException | None, now: float
    ) -> None:
        """``step`` gave its result to the flow, or ``error`` was raised at its ``yield``."""

    def work_started(self, runner: Runner, step: Any, attempt: int, now: float) -> None:
        """Attempt ``attempt`` (from 1) of a ``run`` step's work, or a callable branch, began."""

    def work_ended(
        self, runner: Runner, step: Any, attempt: int, error: BaseException | None, now: float
    ) -> None:
        """That attempt ended, with the exception it ended with, or None."""

    def retry(
        self,
        runner: Runner,
        step: Any,
        attempt: int,
        delay: float,
        error: BaseException,
        now: float,
    ) -> None:
        """Attempt ``attempt`` failed with ``error``; the next begins after ``delay`` seconds."""

    def restarted(self, runner: Runner, reason: BaseException | None, now: float) -> None:
        """A supervisor restarted the runner, for ``reason`` (None: it had ended normally)."""


class InstrumentSet:
    """Instruments installed in one place (the process, or a supervisor): a tuple, replaced.

    The scheduler reads ``items`` without a lock; changes take the lock, so
    threads adding and removing at once lose nothing.
    """

    __slots__ = ("_lock", "items")

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._lock = threading.Lock()
        self.items: tuple[Instrument, ...] = ()
        for instrument in instruments:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        if not isinstance(instrument, Instrument):
            raise TypeError(f"add_instrument: expected a coflow.Instrument, got {instrument!r}")
        with self._lock:
            if instrument not in self.items:
                self.items = (*self.items, instrument)

    def remove(self, instrument: Instrument) -> None:
        """Remove ``instrument``; ``ValueError`` if it is not installed here."""
        with self._lock:
            if instrument not in self.items:
                raise ValueError(f"remove_instrument: {instrument!r} is not installed")
            self.items = tuple(each for each in self.items if each is not instrument)

    def discard(self, instrument: Instrument) -> None:
        with self._lock:
            self.items = tuple(each for each in self.items if each is not instrument)


#: The instruments every runner started from now on reports to.
GLOBAL = InstrumentSet()


def add_instrument(instrument: Instrument) -> None:
    """Install ``instrument`` process-wide: every runner started or restarted from now on
    reports to it (from any thread)."""
    GLOBAL.add(instrument)


def remove_instrument(instrument: Instrument) -> None:
    """Uninstall a process-wide ``instrument``: no hook of it is called after this returns
    (but one running on a scheduler at this moment finishes)."""
    GLOBAL.remove(instrument)


def wanted(watcher: InstrumentSet | None) -> bool:
    """Whether a runner starting now, watched by ``watcher``, must report its steps."""
    return bool(GLOBAL.items) or (watcher is not None and bool(watcher.items))


def report(runner: Any, hook: str, *args: Any) -> None:
    """Call ``hook`` on every instrument ``runner`` reports to: a raising one is logged and
    removed, and the flow goes on."""
    links = runner._links
    watcher = links.watcher if links is not None else None
    instruments = GLOBAL.items if watcher is None else GLOBAL.items + watcher.items
    if not instruments:
        return
    now = runner.backend.now()
    for instrument in instruments:
        try:
            getattr(instrument, hook)(runner, *args, now)
        except BaseException:  # even SystemExit: an instrument never disturbs the flow
            logger.exception(
                "instrument %r raised in %s for flow %r; it is removed", instrument, hook,
                runner.name,
            )
            GLOBAL.discard(instrument)
            if watcher is not None:
                watcher.discard(instrument)


#: The types of the internal work step (``_handlers.Work`` and its kin), filled by ``_handlers``.
WORK_TYPES: set[type] = set()

#: The runner class (``_runner`` adds it): ``live_runners`` finds its instances through the GC.
RUNNER_TYPES: list[type] = []


def live_runners() -> list[Runner]:
    """The runners still referenced and running, oldest first, from any thread.

    They are found among the objects the garbage collector tracks (a runner holds
    references, so it always is one), not in a registry: a runner costs no
    memory or time for being inspectable, and a snapshot pays for the walk,
    about a millisecond per 10,000 objects in the process.  Objects frozen with
    ``gc.freeze()`` are not walked: runners started before a freeze are not seen.
    """
    kinds = tuple(RUNNER_TYPES)
    found: list[Runner] = [
        each  # type: ignore[misc]
        for each in gc.get_objects()
        if isinstance(each, kinds) and each.status == "running"  # type: ignore[attr-defined]
    ]
    found.sort(key=lambda runner: runner.id)
    return found
