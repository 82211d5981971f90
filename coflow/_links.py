"""``Links``: what ties a runner to others (its children and its supervisor), and its rarities.

Kept apart from ``Runner`` so that the many runners with none of these stay
small; a runner makes its ``Links`` on first need.  What few runners need
(errors raised by cleanup, the state of a stop past its grace) lives here too.

A parent keeps its children in start order: all that are running, all that
were started with a ``ref`` (the ref must keep finding them), and the
``KEPT_FINISHED`` most recent others that have finished.  Older finished
children are let go, so a flow that calls a child in a loop for days holds a
bounded number of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._backend import Latch
    from ._instrument import InstrumentSet
    from ._runner import Runner
    from ._scheduler import Task
    from ._supervisor import Supervisor

#: Finished children without a ref that a parent keeps listing in ``children()``.
KEPT_FINISHED = 100


class Links:
    """A runner's parent, children and supervisor; see the module docstring."""

    # Class attributes are the defaults: a new ``Links`` sets nothing, and each
    # runner's sets only what it uses (a parent: its children; a supervised one: its restarts).
    #: The children listed by ``children()``, in start order (a dict: O(1) removal).
    children: dict[Runner, None] | None = None
    #: How many of them are running.
    active = 0
    #: Finished children without a ref, oldest first: the ones let go first.
    finished: deque[Runner] | None = None
    #: ``(flow, ref)`` -> the child started for it.
    refs: dict[tuple[Any, Hashable], Runner] | None = None
    #: The children started with a ref: kept after they end, for the ref to find.
    kept: set[Runner] | None = None
    #: The error the runner ends with once the children it is stopping have ended.
    held: BaseException | None = None
    #: Whether the runner restarts once its children without a ref have ended (else it ends).
    held_for_restart = False
    #: The cancelled root task, held until the children it is stopping have ended.
    parked: Task | None = None
    supervisor: Supervisor | None = None
    #: The instruments of the runner's supervisor, or of its parent's (``_instrument``).
    watcher: InstrumentSet | None = None
    #: What a supervisor's restart starts from.
    initial_state: Any = None
    restarts = 0
    #: Set when a stop's grace is over: a ``Cancelled`` now reaches even cleanup.
    unprotected = False
    #: The outermost names of the runner's lineage and its length (``Runner.path_parts``).
    outer: tuple[tuple[str, ...], int] | None = None
    #: What cleanup raised while the runner was being cancelled: notes on its final error.
    cleanup_errors: list[BaseException] | None = None
    #: The runner's id, once asked for; and the name given to ``start``, if one was.
    id = 0
    name: str | None = None
    #: What the flow failed with, once it has.
    error: BaseException | None = None
    #: The messages sent and not yet taken (``_waking``).
    mailbox: deque[Any] | None = None
    #: Set when the runner ends: what ``result()``, ``wait()`` and a caller wait on.
    done_latch: Latch | None = None
    #: Set by ``stop()`` on the caller's thread; then when the stop begins cancelling the flow.
    stop_asked = False
    stopping = False
    #: When recent restarts happened, on the backend's clock (the supervisor's limit).
    restart_times: list[float] | None = None
    #: On a clock with ``max_steps``: the instant of the last restart, and how many were at it.
    restart_instant = -1.0
    instant_restarts = 0

    def add_child(self, child: Runner, key: tuple[Any, Hashable] | None) -> None:
        children = self.children
        if children is None:
            children = self.children = {}
        children[child] = None
        self.active += 1
        if key is not None:
            if self.refs is None:
                self.refs = {}
                self.kept = set()
            assert self.kept is not None
            self.refs[key] = child
            self.kept.add(child)

    def child_ended(self, child: Runner) -> None:
        self.active -= 1
        if self.kept is not None and child in self.kept:
            return
        finished = self.finished
        if finished is None:
            finished = self.finished = deque()
        elif len(finished) >= KEPT_FINISHED:
            assert self.children is not None
            del self.children[finished.popleft()]
        finished.append(child)

    def abort(self, task: Task) -> None:
        """The grace ran out while the root is parked here: it resumes once the children end."""

    def running_children(self) -> list[Runner]:
        """The running children, last started first: the order they are stopped in."""
        if not self.active or self.children is None:
            return []
        return [child for child in reversed(self.children) if child.status == "running"]

    def running_unreffed(self) -> list[Runner]:
        """The running children no ref could find again, last started first."""
        kept = self.kept or ()
        return [child for child in self.running_children() if child not in kept]

    def listed_children(self) -> list[Runner]:
        return [] if self.children is None else list(self.children.copy())
