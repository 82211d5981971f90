"""``call`` and ``spawn``: child flows, each a runner of its own on its parent's backend.

A child is a full ``Runner`` (its own state, notify, status and stop) tied to
its parent through ``Links``, which also says which children the parent keeps
listing.  Stopping or failing the parent stops the children still running,
and the parent ends only once they have (``Runner.root_finished``).

A ``ref`` makes a start idempotent within one parent runner, across supervisor
restarts too: the same ``(flow, ref)`` finds the child started before, unless
that child was stopped, which gave no result; then a new one starts.
"""

from __future__ import annotations

import threading
from typing import Any

from ._errors import ChildFailed, FlowStopped, FlowTimeout
from ._flow import flow_kind, flow_name
from ._missing import MISSING
from ._runner import Runner, launch
from ._scheduler import SUSPEND, Task
from ._steps import Call, Spawn
from ._validate import is_hashable

#: How deep tasks may be driven inside one another's steps (see ``_nested``).
MAX_NESTED_DRIVES = 16


def _flow_key(flow: Any) -> Any:
    """What "the same flow" means for a ref: a generator object counts as its function."""
    if flow_kind(flow) == "generator":
        return flow.gi_code
    return flow if is_hashable(flow) else id(flow)


def _child(task: Task, step: Call | Spawn, where: str) -> tuple[Runner, bool]:
    """The child for ``step``: the one its ref already names, or a new one; and if it is new.

    A new child is made, not yet started.
    """
    parent = task.runner
    assert isinstance(parent, Runner)  # the only owner of a task
    links = parent.ensure_links()
    key = None
    if step.ref is not None:
        key = (_flow_key(step.flow), step.ref)
        known = links.refs.get(key) if links.refs is not None else None
        if known is not None and known.status != "stopped":
            return known, False
    watcher = links.watcher if links.watcher is not None else _supervisor_set(links)
    child = launch(
        step.flow, parent.backend, step.initial_state, step.notify, None, where, task, watcher
    )
    links.add_child(child, key)
    return child, True


def _supervisor_set(links: Any) -> Any:
    supervisor = links.supervisor
    return supervisor.instrument_set if supervisor is not None else None


def _nested(task: Task, value: Any, error: BaseException | None) -> bool:
    """Drive ``task`` now, inside the step being run; False if already nested too deep.

    Starting a called child, or resuming the caller of an ended child, inline
    saves a trip through the backend; but chains of them nest, so past a
    bound they are posted instead, and depth never costs recursion.
    """
    nesting = _nesting
    if nesting.depth >= MAX_NESTED_DRIVES:
        return False
    nesting.depth += 1
    try:
        task.drive(value, error)
    finally:
        nesting.depth -= 1
    return True


class _Nesting(threading.local):
    """How deep the scheduler running in this thread is driving tasks inside others' steps.

    The scheduler's own bookkeeping, per thread since each scheduler runs in one
    thread (greenlets of one hub never switch inside a step).
    """

    depth = 0


_nesting = _Nesting()


def handle_spawn(task: Task, step: Spawn) -> Any:
    child, new = _child(task, step, "spawn")
    if new:
        assert child.root is not None
        child.backend.call_soon(child.root.drive, None, None)  # the parent goes on first
    return child


def _outcome(child: Runner) -> tuple[Any, BaseException | None]:
    """What a ``call`` of an ended child gives: its final state, or ``ChildFailed``."""
    if child.status == "done":
        return child.state, None
    reason = child.error if child.status == "failed" else FlowStopped(child.name)
    assert reason is not None
    failed = ChildFailed(child.name, reason)
    failed.__cause__ = reason
    return None, failed


class ChildWait:
    """What a task blocked in ``call`` waits on: the child's end, or the call's timeout."""

    __slots__ = ("child", "step", "task", "timed_out", "timer")

    def __init__(self, task: Task, child: Runner, step: Call) -> None:
        self.task = task
        self.child = child
        self.step = step
        self.timed_out = False
        self.timer: Any = None
        if step.timeout is not None:
            self.timer = task.runner.backend.call_later(step.timeout, self.time_out)
        child.when_ended(self.ended)

    def ended(self) -> None:
        error: BaseException | None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.timed_out:
            step = self.step
            if step.timeout_value is not MISSING:
                value, error = step.timeout_value, None
            else:
                assert step.timeout is not None
                value, error = None, FlowTimeout(f"call({flow_name(step.flow)})", step.timeout)
        else:
            value, error = _outcome(self.child)
        task = self.task
        task.waiting = None
        if not _nested(task, value, error):  # resumed at once, as finished work resumes its task
            task.wake_soon(value, error)

    def time_out(self) -> None:
        """Stop the child; the call gives its timeout result once the child has ended."""
        self.timer = None
        self.timed_out = True
        self.child.stop_now()

    def abort(self, task: Task) -> None:
        """The waiting task is cancelled: stop the child; the task resumes once it has ended."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.child.stop_now()


def handle_call(task: Task, step: Call) -> Any:
    child, new = _child(task, step, "call")
    if new:
        root = child.root
        assert root is not None
        if not _nested(root, None, None):  # the caller waits anyway: start the child now
            child.backend.call_soon(root.drive, None, None)
    if child.status != "running":  # it has ended already, or a ref named an ended child
        value, error = _outcome(child)
        if error is not None:
            raise error
        return value
    task.waiting = ChildWait(task, child, step)
    task.blocked_since_now()
    return SUSPEND
