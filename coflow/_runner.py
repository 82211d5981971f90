"""``Runner``: a running flow, its state, and the thread-safe handle the world uses.

Everything that reads or replaces a runner's state runs on its backend's
scheduler.  The public methods that may be called from any thread
(``signal``, ``send``, ``stop``) only post work to the scheduler; reads
(``get_state``, ``status``) read a single attribute.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final, Protocol

from ._ambient import Supervising, find_supervisor
from ._awaiting import wait_for_latch
from ._backend import Backend, Latch, resolve_backend
from ._errors import (
    Cancelled,
    FlowFailed,
    FlowNotRunning,
    FlowStopped,
    FlowTimeout,
    HeldClock,
)
from ._events import FlowDone, FlowError, FlowEvent, FlowRestarted, FlowState
from ._flow import Flow, flow_name, instantiate
from ._future import SignalFuture
from ._instrument import RUNNER_TYPES, InstrumentSet, report, started_hooks, wanted
from ._links import Links
from ._location import add_note
from ._missing import MISSING, MissingType
from ._reporting import ReportingTask
from ._scheduler import Task
from ._steps import reusable
from ._validate import check_delay, check_limit
from ._waking import deliver, state_changed, unblock

logger = logging.getLogger("coflow")
#: What a supervisor's restart counts toward ``max_steps`` at its instant on the virtual clock:
#: a flow that fails at once gets 10,000 restarts at one instant under the default limit.
RESTART_STEPS: Final = 100

_ids = itertools.count(1)
#: A finished runner's ``_done_latch`` when it failed with nobody told: ``__del__`` logs it.
_UNWATCHED: Final = Latch()
#: Held while a runner's sinks are replaced (rare: one lock for all).  Reentrant, because a
#: stream collected meanwhile takes itself off in whatever thread the collector runs.
_SINKS_CHANGING = threading.RLock()
#: Held while a runner's links are made, so two threads cannot each make some (rare: one lock).
_LINKING = threading.Lock()

Notify = Callable[[FlowEvent], Any]
STATUSES = ("running", "done", "failed", "stopped")


class StateView(Protocol):
    """What a task reads and replaces: the runner's state, or a part of it (``embed``)."""

    @property
    def state(self) -> Any: ...

    def replace_state(self, new_state: Any) -> None: ...


class Runner:
    """A running flow: signal it, send it messages, read it, observe it, stop it."""

    # The slots are what a running flow uses all the time; the rest of a runner's
    # attributes (its id, a name given to ``start``, its mailbox, its error, who waits
    # for its end, a stop asked for or in progress) live in its ``Links``, made on first
    # need: so a flow blocked in ``wait_until`` costs a runner of ten slots.
    __slots__ = (
        "__weakref__",  # registries of runners (a test plugin's, an app's) hold them weakly
        "_links",
        "_sinks",
        "backend",
        "blocked",
        "flow",
        "parent",
        "root",
        "state",
        "status",
    )

    # The attributes without a leading underscore and not in SPEC (``root``, ``parent``,
    # ``error``, ``blocked``, ``mailbox``) are the core's: the scheduler, the waking rules
    # and child flows read them; a user reads the public properties and methods.

    def __init__(
        self,
        flow: Any,
        backend: Backend,
        initial_state: Any,
        name: str | None,
        sinks: tuple[Notify, ...],
    ) -> None:
        self.flow = flow
        self.backend = backend
        self.state = initial_state
        #: "running" | "done" | "failed" | "stopped"
        self.status = "running"
        #: Notify targets: the notify callable, then event streams (replaced, never mutated).
        self._sinks = sinks
        #: The task running the flow's body; None once the runner has ended.
        self.root: Task | None = None
        #: Tasks blocked on state changes or messages: what ``_waking`` keeps for this
        #: runner, with its ``mailbox`` (see there).
        self.blocked: Task | list[Task] | None = None
        #: The runner that started this one with ``call`` or ``spawn``.
        self.parent: Runner | None = None
        #: Children, supervisor and the rarely used attributes: made on first need.
        self._links: Links | None = None
        if name is not None:
            self.ensure_links().name = name

    @property
    def id(self) -> int:
        """A number unique to this runner in this process."""
        links = self.ensure_links()
        if not links.id:
            links.id = next(_ids)  # drawn on first use: most runners never need one
        return links.id

    @property
    def name(self) -> str:
        """The name given to ``start``, else the flow's own."""
        links = self._links
        if links is not None and links.name is not None:
            return links.name
        return flow_name(self.flow)

    @property
    def error(self) -> BaseException | None:
        """What the flow failed with, once it has."""
        links = self._links
        return None if links is None else links.error

    @error.setter
    def error(self, error: BaseException | None) -> None:
        if error is not None or self._links is not None:
            self.ensure_links().error = error

    @property
    def mailbox(self) -> deque[Any] | None:
        """The messages sent and not yet taken (``_waking``); None while there never were any."""
        links = self._links
        return None if links is None else links.mailbox

    @mailbox.setter
    def mailbox(self, mailbox: deque[Any] | None) -> None:
        if mailbox is not None or self._links is not None:
            self.ensure_links().mailbox = mailbox

    @property
    def _stop_asked(self) -> bool:
        """Whether ``stop()`` was called: set on the caller's thread, so the stop overtakes
        the signals and messages already queued."""
        links = self._links
        return links is not None and links.stop_asked

    @property
    def _stopping(self) -> bool:
        """Whether a stop has begun cancelling the flow (on the scheduler)."""
        links = self._links
        return links is not None and links.stopping

    @property
    def _done_latch(self) -> Latch | None:
        """Set when the runner ends: what ``result()``, ``wait()`` and a caller wait on."""
        links = self._links
        return None if links is None else links.done_latch

    @_done_latch.setter
    def _done_latch(self, latch: Latch | None) -> None:
        if latch is not None or self._links is not None:
            self.ensure_links().done_latch = latch

    @property
    def restarts(self) -> int:
        """How many times a supervisor has restarted this flow."""
        links = self._links
        return 0 if links is None else links.restarts

    def __repr__(self) -> str:
        return f"<Runner {self.id} {self.name!r} {self.status}>"

    def lineage(self) -> list[str]:
        """The names of the runner's ancestors, outermost first, then its own."""
        names = []
        runner: Runner | None = self
        while runner is not None:
            names.append(runner.name)
            runner = runner.parent
        names.reverse()
        return names

    def path_parts(self, keep: int) -> tuple[list[str], int, list[str]]:
        """The lineage's first ``keep`` names, how many are left out, and its last ``keep``.

        Each parent caches its outermost names in its links, so naming the
        runners of a failure through N nested calls costs O(N) in all, not O(N²).
        """
        chain: list[Runner] = []
        runner: Runner | None = self
        head: tuple[str, ...] = ()
        depth = 0
        while runner is not None:
            links = runner._links
            if links is not None and links.outer is not None:
                head, depth = links.outer
                break
            chain.append(runner)
            runner = runner.parent
        for below in reversed(chain):
            depth += 1
            if len(head) < keep:
                head = (*head, below.name)
            if below._links is not None:
                below._links.outer = (head, depth)
        if depth <= 2 * keep:
            return self.lineage(), 0, []
        inner: list[str] = []
        runner = self
        for _ in range(keep):
            assert runner is not None
            inner.append(runner.name)
            runner = runner.parent
        inner.reverse()
        return list(head), depth - 2 * keep, inner

    def ensure_links(self) -> Links:
        """The runner's links (created on first use, from any thread: ``id`` may ask first)."""
        links = self._links
        if links is None:
            with _LINKING:
                links = self._links
                if links is None:
                    links = self._links = Links()
        return links

    # -- the public, thread-safe API ----------------------------------------

    def signal(self, fn: Callable[[Any], Any]) -> SignalFuture[Any]:
        """Apply ``fn`` to the state on the scheduler; the future holds the new state.

        Re-checks every blocked ``wait_until`` and restarts every ``debounce``.
        If ``fn`` raises, the state is unchanged and the future holds the error.
        A sent signal cannot be cancelled: the future's ``cancel()`` returns ``False``.
        The future is a ``concurrent.futures.Future`` that may also be awaited;
        its ``result()`` raises ``RuntimeError`` on the flow's scheduler thread.
        """
        self._check_running("signal")
        future: SignalFuture[Any] = SignalFuture()
        future._runner = self  # where its waits go: see SignalFuture
        # Unbound, so that a signal allocates no bound method (signals come in floods).
        self.backend.call_soon_threadsafe(Runner._apply_signal, self, fn, future)
        return future

    def send(self, message: Any) -> None:
        """Put ``message`` in the mailbox that ``receive`` takes from."""
        self._check_running("send to")
        self.backend.call_soon_threadsafe(self._deliver, message)

    def get_state(self) -> Any:
        """A snapshot of the current state (the state is replaced, never mutated, by coflow)."""
        return self.state

    def stop(self, grace: float | None = None) -> None:
        """Cancel the flow and its in-flight work; idempotent.  Cleanup steps still run.

        The stop takes effect before the signals and messages already queued.
        With ``grace``, cleanup still running that many seconds later gets
        ``Cancelled`` again, and may then yield no more steps.
        """
        if grace is not None:
            grace = check_delay("stop", "grace", grace)
        if self.status == "running":
            self.ensure_links().stop_asked = True
            self.backend.call_soon_threadsafe(self.stop_now, grace)

    def children(self, status: str | None = None) -> list[Runner]:
        """The runners this one started with ``call`` and ``spawn``, oldest first.

        All that are running, all started with a ``ref``, and the 100 latest
        others that have finished, across supervisor restarts; ``status``
        keeps only those with that status.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(
                f"children of flow {self.name!r}: unknown status {status!r}; expected one of "
                + ", ".join(repr(name) for name in STATUSES)
            )
        links = self._links
        if links is None:
            return []
        children = links.listed_children()
        if status is None:
            return children
        return [child for child in children if child.status == status]

    def result(self, timeout: float | None = None) -> Any:
        """Block until the flow ends; its final state, or ``FlowFailed`` / ``FlowStopped``.

        On the virtual backend this drives the clock, and raises ``Deadlock``
        when nothing could wake the flow.  ``timeout`` may be any number of
        seconds >= 0 (inf, like ``None``, waits as long as it takes).
        """
        if timeout is not None:
            timeout = check_limit(f"result of flow {self.name!r}", "timeout", timeout)
        if self.status == "running":
            latch = self._latch()
            if not self.backend.wait_latch(latch, timeout, f"flow {self.name!r}"):
                raise FlowTimeout(f"waiting for flow {self.name!r}", timeout or 0.0)
        return self._outcome()

    async def wait(self, timeout: float | None = None) -> Any:
        """``await`` form of ``result()``, in the awaiting code's library (asyncio or trio).

        After ``timeout`` seconds it raises ``FlowTimeout``, as ``result()`` does;
        the flow runs on (wrap the await in ``asyncio.timeout`` or stop the
        runner to end it).
        """
        if timeout is not None:
            timeout = check_limit(f"wait for flow {self.name!r}", "timeout", timeout)
        if self.status == "running":
            what = f"flow {self.name!r}"
            if not await wait_for_latch(self.backend, self._latch(), what, timeout):
                raise FlowTimeout(f"waiting for flow {self.name!r}", timeout or 0.0)
        return self._outcome()

    def events(self, maxsize: int | None = None) -> EventStream:
        """The notify events from now on, as an iterator and an async iterator.

        The stream ends after the runner's final event, and stops receiving as
        soon as it is closed or collected.  With ``maxsize``, the oldest
        buffered events beyond that many are dropped (the final one never is).
        """
        if maxsize is not None and (
            not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1
        ):
            raise ValueError(
                f"events of flow {self.name!r}: maxsize must be None or an int >= 1, "
                f"got {maxsize!r}"
            )
        sink = _StreamSink(maxsize)
        if not self._add_stream_sink(sink):
            sink.ended = True  # nothing more will come
        return EventStream(self, sink)

    def stream_count(self) -> int:
        """How many event streams are subscribed to the runner now (``coflow.web.open_streams``).

        A closed, collected or ended stream is not counted: the runner holds nothing of it.
        """
        return sum(1 for sink in self._sinks if type(sink) is _StreamSink)

    def _add_stream_sink(self, sink: _StreamSink) -> bool:
        """Add ``sink`` while the runner runs (any thread); False once it has ended.

        The scheduler reads the sinks without a lock, so they are replaced, never
        mutated.  A stream collected while a new tuple is made (its ``__del__``
        runs wherever the collector does) replaces them itself: then the new
        tuple is made again, so neither change is lost.
        """
        with _SINKS_CHANGING:
            while True:
                sinks = self._sinks
                if self.status != "running":
                    return False  # ``_end`` sets the status before it takes the sinks
                changed: tuple[Notify, ...] = (*sinks, sink)
                if self._sinks is sinks:
                    self._sinks = changed
                    return True

    def _drop_stream_sinks(self, sink: _StreamSink | None) -> tuple[Notify, ...]:
        """Take ``sink`` (or, with None, every stream's) off the runner; the sinks it had."""
        with _SINKS_CHANGING:
            while True:
                sinks = self._sinks
                if sink is None:
                    changed = tuple(each for each in sinks if type(each) is not _StreamSink)
                else:
                    changed = tuple(each for each in sinks if each is not sink)
                if self._sinks is sinks:
                    self._sinks = changed
                    return sinks

    # -- on the scheduler ----------------------------------------------------

    def replace_state(self, new_state: Any, signalled: bool = False) -> None:
        """Make ``new_state`` current; notify if it differs, then wake what waits on changes."""
        old_state = self.state
        self.state = new_state
        if not self._sinks and not self.blocked:
            return  # nobody to notify or wake: equality need not be computed
        if new_state is old_state:
            changed = False
        else:
            try:
                changed = not (new_state == old_state)
            except Exception:
                changed = True  # incomparable states count as a change
        if changed:
            if self._sinks and not self._stopping:
                self._emit(FlowState(new_state, self))
        elif not signalled:
            return
        if self.blocked:
            state_changed(self, self.backend.now())

    def unblock(self, task: Task) -> None:
        """``task`` waits on this runner's state changes and messages no more (its abort)."""
        unblock(self, task)

    @property
    def unprotected(self) -> bool:
        """Whether a stop's grace is over: ``Cancelled`` then reaches even cleanup."""
        links = self._links
        return links is not None and links.unprotected

    def _deliver(self, message: Any) -> None:
        if self.status != "running":
            return
        if self._stop_asked:
            self.stop_now()  # no-op once stopping: a stopping flow takes no more messages
            return
        deliver(self, message)

    def _apply_signal(self, fn: Callable[[Any], Any], future: SignalFuture[Any]) -> None:
        if self.status != "running":
            future.settle(None, FlowNotRunning(self.name, self.status, "signal"))
            return
        links = self._links
        if links is not None and links.stop_asked:  # ``_stop_asked``, read inline: signals flood
            self.stop_now()  # no-op once stopping: the stop overtakes the signals queued behind it
            future.settle(None, FlowNotRunning(self.name, "stopping", "signal"))
            return
        try:
            new_state = fn(self.state)
        except BaseException as error:  # the future holds it, whatever it is (SPEC §9)
            future.settle(None, error)
            return
        self.replace_state(new_state, signalled=True)
        future.settle(new_state, None)

    def stop_now(self, grace: float | None = None) -> None:
        """Cancel the children first (innermost first, last started first), then the flow.

        Walked with a stack, not recursion, so any depth of children can be stopped.
        """
        stopping = self._descendants(lambda runner: not runner._stopping)
        for runner in stopping:
            runner.ensure_links().stopping = True
        for runner in reversed(stopping):
            assert runner.root is not None
            runner.root.cancel()
        if grace is not None and self.status == "running":
            self.backend.call_later(grace, self._force_stop)

    def _descendants(self, keep: Callable[[Runner], bool]) -> list[Runner]:
        """This runner and its running descendants that ``keep`` accepts, parents first."""
        found: list[Runner] = []
        stack: list[Runner] = [self]
        while stack:
            runner = stack.pop()
            if runner.status == "running" and keep(runner):
                found.append(runner)
                if runner._links is not None:
                    stack.extend(runner._links.running_children())  # first started, first walked
        return found

    def _force_stop(self) -> None:
        """The grace is over: cleanup still running gets ``Cancelled`` again, unprotected."""
        for runner in reversed(self._descendants(lambda runner: True)):
            runner.ensure_links().unprotected = True
            assert runner.root is not None
            for task in reversed(runner.root.tree()):
                task.cancel_again()

    def _emit(self, event: FlowEvent) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except BaseException:  # even SystemExit: a notify callable never disturbs the flow
                logger.exception("notify callback of flow %r raised; the flow goes on", self.name)

    def root_finished(self, value: Any, error: BaseException | None) -> None:
        """The flow's body has ended: restart it, or end once the children it stops have ended.

        A failed run that its supervisor restarts keeps the children started
        with a ``ref``, for the restarted run to find; the others are stopped
        first, since nothing could find them again.  A runner that ends failed
        stops all its children.
        """
        del value  # a flow's return value is not its result: its final state is
        links = self._links
        supervisor = links.supervisor if links is not None else None
        if supervisor is not None and not (self._stopping or self._stop_asked):
            assert links is not None
            restart, error = supervisor.judge(self, error)
            if restart:
                if error is None:
                    self._restart(None)  # a run that ended stops no children
                else:
                    self._restart_after_unreffed(links, error)
                return
        if error is not None and links is not None and links.active:
            self._end_after_children(links, error)
        else:
            self._end(error)

    def _end_after_children(self, links: Links, error: BaseException) -> None:
        """Stop the running children; end with ``error`` once they have ended."""
        links.held = error
        links.held_for_restart = False
        for child in links.running_children():
            child.stop_now()

    def _restart_after_unreffed(self, links: Links, reason: BaseException) -> None:
        """Stop the children without a ref; restart once they have ended."""
        unreffed = links.running_unreffed()
        if not unreffed:
            self._restart(reason)
            return
        links.held = reason
        links.held_for_restart = True
        for child in unreffed:
            child.stop_now()

    def _restart_held(self, reason: BaseException) -> None:
        """The children without a ref have ended: restart, unless a stop came meanwhile."""
        links = self._links
        assert links is not None
        if not self._stopping:
            self._restart(reason)
        elif links.active:
            self._end_after_children(links, reason)
        else:
            self._end(reason)

    def child_ended(self, child: Runner) -> None:
        """One of this runner's children has ended (called on the scheduler, by the child)."""
        links = self._links
        assert links is not None  # made when the child was added
        links.child_ended(child)
        if links.parked is not None:
            if not links.active:
                task, links.parked = links.parked, None
                self.backend.call_soon(task.drive, None, None)
        elif links.held is not None:
            # Before a restart only the children without a ref end: those with one go on.
            if links.running_unreffed() if links.held_for_restart else links.active:
                return
            error, links.held = links.held, None
            # Through the backend, so a deep chain of ending children never recurses.
            then = self._restart_held if links.held_for_restart else self._end
            self.backend.call_soon(then, error)

    def park_until_children_end(self, task: Task) -> bool:
        """Hold the cancelled root ``task`` while children run; True if it was held."""
        links = self._links
        if links is None or not links.active:
            return False
        links.parked = task
        task.waiting = links  # not None: the task is blocked, and nothing else can wake it
        task.blocked_since_now()
        return True

    def _restart(self, reason: BaseException | None) -> None:
        """Run the flow again from its initial state, on the same handle."""
        links = self.ensure_links()
        links.restarts += 1
        self.blocked = None
        self.mailbox = None
        self.error = None
        links.cleanup_errors = None
        if self._sinks:
            self._emit(FlowRestarted(reason, self))
        self.state = links.initial_state
        if self._sinks:
            self._emit(FlowState(self.state, self))
        body = instantiate(self.flow, "supervisor restart")
        root: Task
        if wanted(links.watcher):
            root = self.root = ReportingTask(self, body)
            report(self, "restarted", reason)
        else:
            root = self.root = Task(self, body)
        self.backend.call_soon(root.drive, None, None)  # never inline: a restart cannot recurse
        if self.backend.max_steps is not None:
            self._count_instant_restart(links, self.backend.max_steps)

    def _count_instant_restart(self, links: Links, max_steps: int) -> None:
        """A restart is a slice of steps at its instant: enough of them hold the clock still."""
        now = self.backend.now()
        if links.restart_instant != now:
            links.restart_instant, links.instant_restarts = now, 0
        links.instant_restarts += 1
        if links.instant_restarts * RESTART_STEPS > max_steps:
            raise HeldClock(
                f"flow {self.name!r} restarted {links.instant_restarts} times at time {now:g} "
                f"(a restart counts as {RESTART_STEPS} steps; max_steps={max_steps}); on the "
                "virtual clock a flow that fails at once, under a supervisor that lets it restart, "
                "holds time still"
            )

    def _end(self, error: BaseException | None) -> None:
        root = self.root
        reporting = root is not None and root.reporting
        links = self._links
        unwatched = False
        if error is None:
            self.status = "done"
            if self._sinks and not self._stopping:
                self._emit(FlowDone(self.state, self))
        elif isinstance(error, Cancelled):
            self.status = "stopped"
        else:
            self.status = "failed"
            links = self.ensure_links()
            links.error = error
            for cleanup_error in links.cleanup_errors or ():
                add_note(error, f"coflow: while cancelling, cleanup raised {cleanup_error!r}")
            if self._sinks and not links.stopping:
                self._emit(FlowError(error, self))
            elif not self._sinks and links.done_latch is None and links.supervisor is None:
                if self.parent is not None:
                    self._log_unwatched()  # spawned: nothing of its parent waits for it
                else:
                    unwatched = True  # logged when dropped, unless asked for by then
        self.blocked = None
        if self._sinks:
            for sink in self._drop_stream_sinks(None):  # nothing more will come: let them go
                if type(sink) is _StreamSink:
                    sink.end()
        self.root = None  # no cycle left through the finished task: reference counting frees it
        if reporting:
            report(self, "runner_ended")  # before anyone waiting for the end resumes
        if self.parent is not None:
            self.parent.child_ended(self)
        if links is not None:  # else no supervisor or waiter, and no mailbox to drop
            self._end_links(links, unwatched)

    def _end_links(self, links: Links, unwatched: bool) -> None:
        """Tell the supervisor and whoever waits that the runner has ended."""
        if links.mailbox is not None:
            links.mailbox = None
        if links.supervisor is not None:
            links.supervisor.forget(self)
        latch = links.done_latch
        if latch is not None or unwatched:
            links.done_latch = _UNWATCHED if unwatched else None
        if latch is not None:
            latch.set()

    def when_ended(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` on the scheduler once the runner has ended; call on the scheduler."""
        if self.status != "running":
            self._done_latch = None  # asked for: not _UNWATCHED any more
            callback()
            return
        links = self.ensure_links()
        if links.done_latch is None:
            links.done_latch = Latch()
        links.done_latch.add_callback(callback)

    def __del__(self) -> None:
        links = self._links
        if links is not None and links.done_latch is _UNWATCHED:
            self._log_unwatched()

    def _log_unwatched(self) -> None:
        """A failure nobody hears of is logged, as asyncio logs an exception never retrieved."""
        error = self.error
        where = getattr(error, "_coflow_where", None) or f"in flow {' > '.join(self.lineage())}"
        logger.error(
            "flow %r failed %s, and nothing watched it (no notify, result(), wait() or "
            "calling parent): %r",
            self.name,
            where,
            error,
            exc_info=error,
        )

    def _supervised(self) -> bool:
        """Whether a supervisor has this runner: it logs the failure it gives up on."""
        links = self._links
        return links is not None and links.supervisor is not None

    def cleanup_failed(self, error: BaseException, where: str) -> None:
        """Cleanup run during a cancellation raised: log it and keep it for ``FlowError``."""
        logger.error("cleanup of flow %s raised during cancellation", where, exc_info=error)
        links = self.ensure_links()
        if links.cleanup_errors is None:
            links.cleanup_errors = []
        links.cleanup_errors.append(error)

    # -- helpers ---------------------------------------------------------------

    def _check_running(self, action: str) -> None:
        if self.status != "running":
            raise FlowNotRunning(self.name, self.status, action)

    def _latch(self) -> Latch:
        latch = Latch()
        self.backend.call_soon_threadsafe(self.when_ended, latch.set)
        return latch

    def _outcome(self) -> Any:
        self._done_latch = None  # asked for: not _UNWATCHED any more
        if self.status == "done":
            return self.state
        if self.status == "stopped":
            raise FlowStopped(self.name)
        assert self.error is not None
        where = getattr(self.error, "_coflow_where", None)
        raise FlowFailed(self.name, self.error, where) from self.error


RUNNER_TYPES.append(Runner)


class _StreamSink:
    """What a runner holds of an ``EventStream``: its buffer, never the stream itself.

    So a stream nobody refers to is collected, and takes this off the runner as
    it goes.  The scheduler adds events and ends it; the stream's reader takes
    the events; once the stream has closed it, whatever comes is dropped.
    """

    __slots__ = ("closed", "dropped", "ended", "events", "latch", "maxsize")

    def __init__(self, maxsize: int | None) -> None:
        self.events: deque[FlowEvent] = deque()
        self.maxsize = maxsize
        self.dropped = 0
        self.ended = False
        self.closed = False
        #: Set on the scheduler at the next event or the end, for a reader waiting for one.
        self.latch: Latch | None = None

    def __call__(self, event: FlowEvent) -> None:
        """A notify sink: buffer ``event`` for the reader."""
        if self.closed:
            return
        events = self.events
        maxsize = self.maxsize
        if (
            maxsize is not None
            and len(events) >= maxsize
            and not isinstance(event, (FlowDone, FlowError))
        ):
            try:
                events.popleft()  # the oldest: a final event is the last one ever buffered
                self.dropped += 1
            except IndexError:
                pass  # the reader took it meanwhile
        events.append(event)
        self.wake()

    def end(self) -> None:
        """On the scheduler: the runner has ended and sent its last event."""
        self.ended = True
        self.wake()

    def wake(self) -> None:
        latch, self.latch = self.latch, None
        if latch is not None:
            latch.set()

    def disarm(self, latch: Latch) -> None:
        """On the scheduler: a reader stopped waiting for ``latch`` (its timeout passed)."""
        if self.latch is latch:
            self.latch = None

    def arm(self, latch: Latch) -> None:
        """On the scheduler: set ``latch`` at the next event or the end (now, if one is here)."""
        if self.events or self.ended or self.closed:
            latch.set()
        elif self.latch is not None:
            self.latch.add_callback(latch.set)  # another reader waits too: wake both
        else:
            self.latch = latch


class EventStream:
    """The events of one runner from the moment ``events()`` was called, until it ends.

    Iterate it with ``for`` or ``async for``; it ends after the runner's final
    event.  Closing it stops it receiving at once, drops what it holds and takes
    it off the runner: ``close()`` or ``aclose()``, leaving ``with`` or ``async
    with``, cancelling the task (or killing the greenlet) waiting in it, or
    dropping the last reference to it.
    """

    __slots__ = ("__weakref__", "_runner", "_sink")

    def __init__(self, runner: Runner, sink: _StreamSink) -> None:
        self._runner = runner
        self._sink = sink

    def __repr__(self) -> str:
        sink = self._sink
        state = "closed" if sink.closed else "ended" if sink.ended else "open"
        return f"<EventStream of {self._runner.name!r} {state} buffered={len(sink.events)}>"

    @property
    def maxsize(self) -> int | None:
        """The most events buffered before the oldest are dropped; ``None``: no bound."""
        return self._sink.maxsize

    @property
    def dropped(self) -> int:
        """How many of the oldest buffered events were dropped to stay within ``maxsize``."""
        return self._sink.dropped

    @property
    def closed(self) -> bool:
        """True once the stream was closed: it receives nothing more and yields nothing more."""
        return self._sink.closed

    @property
    def finished(self) -> bool:
        """True once the stream yields nothing more: closed, or ended with every event taken."""
        sink = self._sink
        return sink.closed or (sink.ended and not sink.events)

    def close(self) -> None:
        """Stop receiving now: drop what is buffered and leave the runner; idempotent."""
        sink = self._sink
        if sink.closed:
            return
        self._unsubscribe()
        if not sink.ended:
            try:  # a reader waiting in another thread or greenlet ends its iteration
                self._runner.backend.call_soon_threadsafe(sink.wake)
            except RuntimeError:
                pass  # the backend has closed: no reader of it can be waiting

    async def aclose(self) -> None:
        """``close()``, for ``async`` code."""
        self.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._sink.closed:
            self._unsubscribe()  # nobody can be waiting in a stream nobody refers to

    def _unsubscribe(self) -> None:
        sink = self._sink
        sink.closed = True
        sink.events.clear()
        self._runner._drop_stream_sinks(sink)

    def _next_latch(self) -> Latch:
        latch = Latch()
        self._runner.backend.call_soon_threadsafe(self._sink.arm, latch)
        return latch

    def _take(self) -> FlowEvent | None:
        """The next buffered event; None when there is none yet (or ever: see ``_over``)."""
        try:
            return self._sink.events.popleft()
        except IndexError:
            return None

    def next_event(self, timeout: float | None = None) -> FlowEvent | None:
        """The next event, waiting at most ``timeout`` seconds (of the backend's clock) for it.

        ``None`` when none came in time, or when the stream is over: ``finished``
        tells which.  For a reader with something to do while the flow is quiet
        (a server's heartbeat), which ``for`` cannot give it.  On the virtual
        clock a read that nothing could ever end raises ``Deadlock``, as
        ``result(timeout=)`` does.
        """
        what = f"events of {self._runner.name!r}"
        timeout = check_limit(what, "timeout", timeout)
        backend = self._runner.backend
        deadline = None if timeout is None else backend.now() + timeout
        sink = self._sink
        while not sink.closed:
            ended = sink.ended  # read first: the final event is buffered before the end is set
            event = self._take()
            if event is not None or ended:
                return event
            left = None if deadline is None else max(0.0, deadline - backend.now())
            latch = self._next_latch()
            try:
                woken = backend.wait_latch(latch, left, what)
            except BaseException as error:
                if not isinstance(error, Exception):
                    self.close()  # the reader was killed or interrupted: it reads no more
                raise
            if not woken:
                self._disarm(latch)
                return None
        return None

    async def anext_event(self, timeout: float | None = None) -> FlowEvent | None:
        """``next_event()``, awaited in the awaiting code's library (asyncio or trio)."""
        what = f"events of {self._runner.name!r}"
        timeout = check_limit(what, "timeout", timeout)
        backend = self._runner.backend
        deadline = None if timeout is None else backend.now() + timeout
        sink = self._sink
        while not sink.closed:
            ended = sink.ended  # read first: the final event is buffered before the end is set
            event = self._take()
            if event is not None or ended:
                return event
            left = None if deadline is None else max(0.0, deadline - backend.now())
            latch = self._next_latch()
            try:
                woken = await wait_for_latch(backend, latch, what, left)
            except BaseException as error:
                if not isinstance(error, Exception):
                    self.close()  # the reading task was cancelled: it reads no more
                raise
            if not woken:
                self._disarm(latch)
                return None
        return None

    def _disarm(self, latch: Latch) -> None:
        """Forget ``latch``, waited for in vain, so quiet timed reads leave nothing behind."""
        try:
            self._runner.backend.call_soon_threadsafe(self._sink.disarm, latch)
        except RuntimeError:
            pass  # the backend has closed: nothing of it holds the latch any more

    def __iter__(self) -> Iterator[FlowEvent]:
        return self

    def __next__(self) -> FlowEvent:
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def __aiter__(self) -> AsyncIterator[FlowEvent]:
        return self

    async def __anext__(self) -> FlowEvent:
        event = await self.anext_event()
        if event is None:
            raise StopAsyncIteration
        return event

def _sink(notify: Any) -> Notify:
    put_nowait = getattr(notify, "put_nowait", None)
    if put_nowait is not None:
        return put_nowait  # type: ignore[no-any-return]
    if callable(notify):
        return notify  # type: ignore[no-any-return]
    raise TypeError(f"notify must be a callable or a queue with put_nowait, got {notify!r}")


def launch(
    flow: Any,
    backend: Backend,
    initial_state: Any,
    notify: Any,
    name: str | None,
    where: str = "coflow.start",
    task: Any = None,
    watcher: InstrumentSet | None = None,
) -> Runner:
    """A runner for ``flow`` with its root task made, not yet posted to run.

    ``where`` and ``task`` (for a child: the step and the task starting it) name the
    start in errors; ``watcher`` holds its supervisor's instruments (or its parent's).
    """
    if initial_state is MISSING:
        initial_state = flow.initial_state if isinstance(flow, Flow) else None
    body = instantiate(flow, where, task)
    sinks = () if notify is None else (_sink(notify),)
    runner = Runner(flow, backend, initial_state, name, sinks)
    if task is not None:
        runner.parent = task.runner  # a child: known to the hooks as one from its start
    if watcher is not None:
        runner.ensure_links().watcher = watcher
    if wanted(watcher):
        runner.root = ReportingTask(runner, body)
        report(runner, "runner_started")
    else:
        runner.root = Task(runner, body)
    if started_hooks:
        for hook in tuple(started_hooks):
            hook(runner)
    return runner


def start(
    flow: Any,
    *,
    initial_state: Any = MISSING,
    notify: Any = None,
    backend: Backend | str | None = None,
    name: str | None = None,
    supervisor: Supervising | MissingType | None = MISSING,
) -> Runner:
    """Start running ``flow`` and return its ``Runner``.

    ``flow`` is a ``Flow``, a generator function, a generator object or a step.
    ``initial_state`` overrides the flow's declared one.  ``supervisor`` names
    the supervisor that restarts it; by default the one of the enclosing
    ``with supervisor:`` block, else the installed one; ``None`` opts out.
    """
    chosen = find_supervisor(supervisor)
    if chosen is not None:
        reusable("coflow.start under a supervisor, which restarts the flow", flow)
        if backend is None:
            backend = chosen.backend
    resolved = resolve_backend(backend)
    watcher = chosen.instrument_set if chosen is not None else None
    runner = launch(flow, resolved, initial_state, notify, name, watcher=watcher)
    if chosen is not None:
        chosen.adopt(runner)
    assert runner.root is not None
    resolved.call_soon_threadsafe(runner.root.drive, None, None)
    return runner
