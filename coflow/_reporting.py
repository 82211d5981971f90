"""The step loop of an instrumented runner: ``Task.drive`` with every step reported.

A runner started while an instrument is installed gets a ``ReportingTask``
as its root (and ``ReportingBranchTask`` branches), so the plain loop keeps
no check for instruments at all.  This loop is ``Task.drive`` with the hooks
added; it never files its task on a timer heap for a ``wait`` (it arms a
timer instead), so the virtual clock's fast path, which resumes a filed
task's frame itself, never skips a step of it.

A step is *open* from its ``yield`` until the frame that yielded it resumes
(``opened``, by frame depth): a composite step (``sequence``, a sub-flow,
``run`` with retries) stays open while the frames it pushed run, and the
steps those frames yield are reported too, except the work internals of
``run`` (its attempts are reported by ``work_started``/``work_ended``).
"""

from __future__ import annotations

from typing import Any

from ._errors import Cancelled, HeldClock
from ._instrument import WORK_TYPES, report
from ._location import _code
from ._scheduler import (
    _YIELDED,
    DISPATCH,
    FALLBACK,
    LOOP_CODES,
    SLICE,
    SUSPEND,
    BranchTask,
    Frame,
    Task,
    _without_loop_frame,
)
from ._steps import SetState, Wait

#: Steps of the scheduler's own never reported as steps (``_handlers`` adds its ``Tick``).
QUIET_STEPS: set[type] = set()
#: Code of internal frames whose yields are not steps of the flow (``run``'s attempts loop).
QUIET_CODES: set[Any] = set()


def _is_work(waiting: Any) -> bool:
    return waiting.__class__ in WORK_TYPES


def _top_step(task: Any) -> Any:
    """The innermost open step: the one a block, a wake or a work attempt belongs to (for work,
    its ``run``, ``parallel`` or ``race``)."""
    opened = task.opened
    return opened[max(opened)] if opened else None


def drive(self: Any, value: Any, error: BaseException | None, ran: int = 0) -> None:
    """``Task.drive``, reporting each step to the runner's instruments."""
    runner = self.runner
    blocked = self.blocked_on
    self.waiting = None
    if blocked is not None:
        self.blocked_on = None
        if _is_work(blocked):
            report(runner, "work_ended", _top_step(self), blocked.attempt, error)
        step = _top_step(self)
        if step is not None:
            report(runner, "step_woken", step)
    stack = self.stack
    if stack is not None and stack.cancel_pending:
        if self.join is None and runner.park_until_children_end(self):
            self.blocked_on = self.waiting
            self.since = runner.backend.now()
            return
        stack.cancel_pending = False
        value, error = self._cancellation()
    opened: dict[int, Any] = self.opened
    budget = SLICE
    view = None
    while True:
        gen: Frame = self.frame
        depth = self.depth()
        try:
            if error is not None and error is _YIELDED:
                error = None
                step = value  # yielded already (never, for a task no heap files)
            else:
                ended = opened.pop(depth, None)
                if ended is not None:
                    report(runner, "step_ended", ended, error)
                if error is None:
                    step = gen.send(value)
                else:
                    thrown, error = error, None
                    step = gen.throw(thrown)
        except StopIteration as stop:
            value = stop.value
            depth = self._pop_frame()
            _close_above(opened, depth)
            stack = self.stack
            if stack is not None and depth < stack.cancel_depth:
                stack.cancel_depth = depth
                value, error = self._cancellation()
            if not depth:
                break
            continue
        except BaseException as escaped:  # SPEC §9: even SystemExit only fails the flow
            error = self._escaped(escaped, gen)
            depth = self._pop_frame()
            _close_above(opened, depth)
            if not depth:
                value = None
                break
            if error.__class__ is Cancelled and depth <= self._cancel_depth():
                value, error = self._cancellation()
            continue
        budget -= 1
        cls = step.__class__
        if cls not in QUIET_STEPS and cls not in WORK_TYPES and _code(gen) not in QUIET_CODES:
            opened[depth] = step
            report(runner, "step_began", step)
        try:
            if step.__class__ is SetState:
                if view is None:
                    view = self.view
                value = step.fn(view.state)
                view.replace_state(value)
            elif step.__class__ is Wait:
                backend = runner.backend
                self.waiting = step
                self.deadline = backend.now() + step.seconds
                self.timer = backend.call_later(step.seconds, _wake, self)
                _blocked(self, step)
                return
            else:
                value = DISPATCH.get(step.__class__, FALLBACK[0])(self, step)
        except HeldClock:
            raise
        except BaseException as failed:  # raised at the ``yield``, whatever it is
            value, error = None, _without_loop_frame(failed)
            continue
        if value is SUSPEND:
            waiting = self.waiting
            if waiting is not None:  # else a nested drive has resumed it already
                _blocked(self, waiting)
            return
        if not budget:
            self._end_slice(value, ran + SLICE)
            return
    self._finish(value, error)


LOOP_CODES.add(drive.__code__)


def _blocked(task: Any, waiting: Any) -> None:
    runner = task.runner
    task.blocked_on = waiting
    task.since = runner.backend.now()
    if _is_work(waiting):
        report(runner, "work_started", _top_step(task), waiting.attempt)
    step = _top_step(task)
    if step is not None:
        report(runner, "step_blocked", step)


def _wake(task: Any) -> None:
    """A ``wait``'s timer has fired."""
    task.timer = None
    task.drive(None, None)


def _close_above(opened: dict[int, Any], depth: int) -> None:
    """Frames above ``depth`` have ended: a step they left open is over too."""
    for stale in [key for key in opened if key > depth]:
        del opened[stale]


class ReportingTask(Task):
    """A root task whose steps are reported (see the module docstring)."""

    __slots__ = ("blocked_on", "opened", "since")
    reporting = True
    drive = drive

    def __init__(self, runner: Any, body: Frame) -> None:
        super().__init__(runner, body)
        self.opened: dict[int, Any] = {}
        #: What the task blocked on, until it is driven again; and when it blocked.
        self.blocked_on: Any = None
        self.since = 0.0


class ReportingBranchTask(BranchTask):
    """A branch task of an instrumented runner."""

    __slots__ = ("blocked_on", "opened", "since")
    reporting = True
    drive = drive

    def __init__(self, runner: Any, view: Any, body: Frame, join: Any, index: int) -> None:
        super().__init__(runner, view, body, join, index)
        self.opened: dict[int, Any] = {}
        self.blocked_on: Any = None
        self.since = 0.0


ReportingTask.branch_type = ReportingBranchTask
ReportingBranchTask.branch_type = ReportingBranchTask
