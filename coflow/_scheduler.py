"""The scheduler: drives flows (generators) by interpreting the steps they yield.

Invariants, which every backend relies on:

* A *task* is one thread of control: a stack of generator frames.  A runner
  has one root task; ``parallel``, ``race``, ``timeout`` and ``embed`` start
  branch tasks that share the runner's state (a plain callable given to
  ``parallel`` or ``race`` is only backend work, joined with no task of its
  own).  Sub-flows are frames pushed on the task's stack, so nesting costs
  memory, never Python recursion.
* ``Task.drive`` is the one step loop.  It sends a value (or throws an error)
  into the top frame and dispatches the yielded step through ``DISPATCH``, a
  table keyed by the step's type.  A handler either returns the step's result
  at once (synchronous steps run inline, no trip through the backend) or
  returns ``SUSPEND`` after arranging for something to resume the task later.
  ``set_state``, the commonest step and the body of every busy loop, and
  ``wait``, the commonest way to block, are run by the loop itself, saving a
  call per step; a ``wait`` asks the backend to ``wake_later`` the task, which
  an event-loop backend does by filing the task on its timer heap, and the
  virtual clock's loop (``TimerHeap.run_virtual``) resumes a filed task's
  frame itself, handing any step but another ``wait`` to ``run_yielded``.
* Everything runs on the scheduler, one callback at a time: state is never
  touched by two pieces of code at once.  A task that wakes another never runs
  it inline: it posts it with ``call_soon``, so ready tasks run in FIFO order.
  Backend callbacks (a timer, finished work) resume their own task directly.
* A task runs at most ``SLICE`` steps, then re-posts itself behind the work
  already ready: a flow that never blocks cannot starve the others.
* Cancellation is structured.  ``Task.cancel`` first aborts what the task is
  blocked on (children are cancelled before their parent, last started first,
  and waited for), then throws ``Cancelled`` into the top frame; a root task
  throws it only once the runner's child runners have ended.  Frames that
  existed when the cancellation began receive it innermost first; whatever
  they yield while handling it (cleanup) runs normally and is not cancelled
  again.  An error raised by such cleanup is logged and kept, never allowed to
  replace the cancellation.  Past a stop's grace the runner is *unprotected*:
  ``Cancelled`` reaches cleanup too, and a frame that answers it with a step
  is closed.

The rules that make every fault end in a reported outcome (SPEC §9):

* **One way for work to end.**  A backend reports every end of a piece of
  work, once, as ``done(value, error)``: a value, any ``BaseException`` (even
  ``SystemExit`` or a ``GreenletExit`` from someone else's kill), or its
  cancellation.  Only the task's resumption reads the result, and a task
  being cancelled (``cancel_pending``) resumes with ``Cancelled`` whatever
  the work gave, so a cancelled ``run`` never commits its ``Ok``, ``Update``
  or ``Retry``.
* **Suspend and abort.**  Whatever a suspended task waits on is in
  ``task.waiting``, and has ``abort(task)``: a step it blocks on (``wait``,
  ``wait_until``, ``debounce``, ``receive``) wakes it at once; work, a call's
  child or a join cancels what it waits for and resumes the task only once
  that has really ended.  ``abort`` returns the branches to cancel next, so
  ``cancel_all`` walks any depth with a stack, never recursion.
* **User code cannot take the scheduler down.**  The step loop catches any
  ``BaseException`` from a flow or a handler and raises it at the ``yield``
  (or fails the flow with it); the runner does the same for signal functions
  and notify callables; each backend's loop logs and survives an exception
  from any callback.  Delays are armed in pieces a backend's clock can take.

Writing a handler (one per step type, listed in ``_dispatch``'s table):

1. Return the step's result at once, or ``SUSPEND`` after setting
   ``task.waiting`` to an object with ``abort(task)``.
2. Resume the task exactly once: ``task.drive(value, error)`` from a backend
   callback about this task, ``task.wake_soon(value, error)`` when waking it
   from another task's code.  Cancel any timer you armed when it resumes.
3. Run user code (predicates, functions of the state) inside the handler or
   inside a ``try`` that hands any ``BaseException`` to the task: an error
   of user code is raised at the flow's ``yield``, never in a backend callback.
4. Replace state only through ``task.view.replace_state``, so notify and the
   re-checks of ``wait_until`` and ``debounce`` see every change.
5. A composite step pushes an ``@internal`` generator as a frame instead of
   recursing, and starts branch tasks through a ``Join``.
6. Keep the common case off the step loop's fast path: no work in ``drive``
   for a step that does not need it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._errors import Cancelled, HeldClock
from ._event_loop import TimerHeap
from ._instrument import report
from ._lasting import start_work
from ._location import INTERNAL_CODES, PATH_ENDS, add_note, flow_path, is_user_frame, yield_site
from ._steps import SetState, Wait

if TYPE_CHECKING:
    from collections import deque

    from ._backend import Backend, Handle
    from ._runner import StateView

Frame = Generator[Any, Any, Any]
Handler = Callable[["Task", Any], Any]


class Owner(Protocol):
    """What a task asks of the runner it belongs to: the whole of their contract.

    The scheduler reaches the backend and the runner only through this; the
    waking rules (``_waking``) keep their registry in ``blocked`` and ``mailbox``.
    """

    backend: Backend
    blocked: Task | list[Task] | None
    mailbox: deque[Any] | None

    @property
    def state(self) -> Any:
        """The runner's state: what its root task reads (the runner is its root task's view)."""

    def replace_state(self, new_state: Any) -> None:
        """Make ``new_state`` the runner's state (see ``StateView``)."""

    @property
    def unprotected(self) -> bool:
        """Whether a stop's grace is over: ``Cancelled`` then reaches even cleanup."""

    def root_finished(self, value: Any, error: BaseException | None) -> None:
        """The root task has ended, with its body's return value or the error it raised."""

    def park_until_children_end(self, task: Task) -> bool:
        """Hold the cancelled root ``task`` while child runners run; True if it was held."""

    def cleanup_failed(self, error: BaseException, where: str) -> None:
        """Cleanup run during a cancellation raised ``error``: keep it for the final report."""

    def unblock(self, task: Task) -> None:
        """``task``, being cancelled, waits on state changes and messages no more."""

    def path_parts(self, keep: int) -> tuple[list[str], int, list[str]]:
        """The names of the runners down to this one, shortened (``flow_path``)."""


class Waitable(Protocol):
    """What a suspended task waits on (``task.waiting``): a step it blocks on (``wait``,
    ``wait_until``, ``debounce``, ``receive``), work, a called child, a join of branches, or
    the runner's children before a cancelled root resumes.

    ``abort(task)`` is how a cancellation stops the wait: it wakes the task at
    once, or cancels what the task waits for and lets it resume once that has
    ended; it returns the branches to cancel next, if any.
    """

    def abort(self, task: Task) -> Iterable[Cancellable] | None: ...


class Cancellable(Protocol):
    """A branch a cancellation walks: a task, or a callable branch's work."""

    def cancel_one(self) -> Iterable[Cancellable] | None: ...


#: Returned by a handler that has suspended its task.
SUSPEND: Final = object()
#: Steps a task runs before it lets the work already ready go first.
SLICE: Final = 500

#: Step type -> handler: the table in ``_dispatch``, which fills it when coflow is imported.
DISPATCH: dict[type, Handler] = {}
#: Handler for anything not in ``DISPATCH`` (flows given as values, and mistakes).
FALLBACK: list[Handler] = []


class Task:
    """One thread of control in a runner: a stack of frames and what it is blocked on.

    This is a runner's root task; ``BranchTask`` is a branch task of a join.  Its
    slots are what a blocked flow needs; what few tasks need waits in a
    ``Stack`` made on first need, so a flow blocked in one frame stays small.
    """

    __slots__ = ("deadline", "frame", "runner", "stack", "timer", "waiting")

    #: The join a branch task belongs to, and its place there (``BranchTask``; a root task
    #: is no branch).
    join: Join | None = None
    index = 0
    #: Whether the task reports its steps to instruments (``_reporting``): never, here.
    reporting = False
    #: The class of the task's branches (``Join.spawn``); set below, once ``BranchTask`` exists.
    branch_type: type[BranchTask]

    def __init__(self, runner: Owner, body: Frame) -> None:
        self.runner = runner
        #: The frame that runs: the innermost sub-flow; None once the task has finished.
        self.frame: Frame | None = body
        #: The frames below the top one and the cancellation's progress; None until needed.
        self.stack: Stack | None = None
        #: What the task is blocked on (a step, a Join or a work waiter); None when ready.
        self.waiting: Waitable | None = None
        self.timer: Any = None
        #: When the task is due: the end of its ``wait`` filed on a timer heap, or of its debounce;
        #: for a wait with no deadline of its own, when it began (``blocked_since_now``).
        self.deadline = 0.0

    def blocked_since_now(self) -> None:
        """Note when a wait with no deadline of its own began, for ``inspect()``'s "since when".

        A ``wait_until``, a ``receive``, a join of branches, a child call and a
        stopped flow waiting for its children keep it in ``deadline``, which they
        have no other use for: no slot of its own.
        """
        self.deadline = self.runner.backend.now()

    @property
    def view(self) -> StateView:
        """What the task reads and replaces: its runner's state (a branch may have a part)."""
        return self.runner

    @property
    def cancel_pending(self) -> bool:
        """Whether the task is cancelled and ``Cancelled`` is still to reach its top frame."""
        stack = self.stack
        return stack is not None and stack.cancel_pending

    # -- the step loop -------------------------------------------------------

    def drive(self, value: Any, error: BaseException | None, ran: int = 0) -> None:
        """Resume the top frame with ``value`` (or ``error``) and run until the task blocks.

        ``ran`` counts the steps already run at this instant without blocking: a
        slice that ends hands it on to the next one (see ``_end_slice``).
        """
        self.waiting = None
        stack = self.stack
        if stack is not None and stack.cancel_pending:
            if self.join is None and self.runner.park_until_children_end(self):
                return  # the runner's children end first; then Cancelled is thrown here
            stack.cancel_pending = False
            value, error = self._cancellation()
        budget = SLICE
        view: StateView | None = None
        while True:
            gen: Frame = self.frame  # type: ignore[assignment]  # a task that runs has a frame
            try:
                if error is None:
                    step = gen.send(value)
                else:
                    thrown, error = error, None
                    # ``value`` is a step the top frame yielded already (see ``run_yielded``).
                    step = value if thrown is _YIELDED else gen.throw(thrown)
            except StopIteration as stop:
                value = stop.value
                depth = self._pop_frame()
                stack = self.stack
                if stack is not None and depth < stack.cancel_depth:
                    # The frame swallowed its Cancelled: the cancellation goes on outward.
                    stack.cancel_depth = depth
                    value, error = self._cancellation()
                if not depth:
                    break  # finished outside the handler, so no error there chains to StopIteration
                continue
            except BaseException as escaped:  # SPEC §9: even SystemExit only fails the flow
                error = self._escaped(escaped, gen)
                depth = self._pop_frame()
                if not depth:
                    value = None
                    break
                if error.__class__ is Cancelled and depth <= self._cancel_depth():
                    value, error = self._cancellation()  # into a frame the cancellation reaches
                continue
            budget -= 1
            try:
                if step.__class__ is SetState:  # the commonest step, the body of busy loops
                    if view is None:
                        view = self.view
                    value = step.fn(view.state)
                    view.replace_state(value)
                elif step.__class__ is Wait:  # the commonest way to block
                    self.waiting = step
                    self.runner.backend.wake_later(step.seconds, self)
                    return
                else:
                    value = DISPATCH.get(step.__class__, FALLBACK[0])(self, step)
            except HeldClock:
                raise  # from a child driven inside the step: the clock's limit, not the step's
            except BaseException as failed:  # raised at the ``yield``, whatever it is
                value, error = None, _without_loop_frame(failed)
                continue
            if value is SUSPEND:
                return
            if not budget:
                self._end_slice(value, ran + SLICE)
                return
        self._finish(value, error)

    def run_yielded(self, step: Any) -> None:
        """Run ``step``, which the top frame has yielded to whoever resumed it, as ``drive`` does.

        A timer heap resumes a filed task's frame itself (the commonest event
        on a clock) and hands over any step but a ``wait``.
        """
        self.drive(step, _YIELDED)

    def frame_ended(self, ended: BaseException) -> None:
        """The top frame, resumed by a timer heap, ended with ``ended`` (``StopIteration`` too).

        ``drive`` throws it into the ended frame, which raises it again there,
        and handles it as if ``drive`` had resumed the frame itself.
        """
        tb = ended.__traceback__
        if tb is not None:
            ended.__traceback__ = tb.tb_next  # without the heap's loop in the traceback
        self.drive(None, ended)

    # -- frames ---------------------------------------------------------------

    def push(self, frame: Frame) -> None:
        """Run ``frame`` on top (a sub-flow, or a composite step's own generator)."""
        stack = self.stack
        if stack is None:
            stack = self.stack = Stack()
        stack.callers.append(self.frame)  # type: ignore[arg-type]  # a running task has one
        self.frame = frame

    def _pop_frame(self) -> int:
        """Drop the top frame, which has ended; the frames left (0: the task has finished)."""
        stack = self.stack
        if stack is not None and stack.callers:
            self.frame = stack.callers.pop()
            return len(stack.callers) + 1
        self.frame = None
        return 0

    def frames(self) -> list[Frame]:
        """The task's frames, outermost first (the top frame last)."""
        if self.frame is None:
            return []
        return [*(self.stack.callers if self.stack is not None else ()), self.frame]

    def depth(self) -> int:
        """How many frames the task has (0 once it has finished)."""
        if self.frame is None:
            return 0
        stack = self.stack
        return len(stack.callers) + 1 if stack is not None else 1

    def _stack(self) -> Stack:
        stack = self.stack
        if stack is None:
            stack = self.stack = Stack()
        return stack

    def _cancel_depth(self) -> int:
        """-1 until cancelled; then the depth down to which frames still get ``Cancelled``."""
        stack = self.stack
        return -1 if stack is None else stack.cancel_depth

    def _cancellation(self) -> tuple[None, BaseException | None]:
        """What resumes the top frame to cancel it: ``Cancelled``, unprotected past a grace."""
        if self.runner.unprotected and self.frame is not None:
            self.frame = _unprotected(self.frame)
            return None, None
        return None, Cancelled()

    def _escaped(self, error: BaseException, gen: Frame) -> BaseException:
        """Account for ``error`` leaving ``gen`` (still stacked); return what goes on outward."""
        _without_loop_frame(error)
        depth = self.depth() - 1
        if depth < self._cancel_depth():
            self._stack().cancel_depth = depth
            if not isinstance(error, Cancelled):
                self.runner.cleanup_failed(error, self.path())
                return Cancelled()
            return error
        if not isinstance(error, Cancelled) and is_user_frame(gen):
            locate(error, gen, self)
        return error

    def _end_slice(self, value: Any, ran: int) -> None:
        """Let the work already ready go first; ``ran`` steps have run without blocking.

        The count travels with the posted resumption, so blocking forgets it
        at no cost; on a virtual clock time cannot pass while the task is
        ready, so the count is of steps at one instant (``max_steps``).
        """
        backend = self.runner.backend
        backend.call_soon(self.drive, value, None, ran)
        if backend.max_steps is not None and ran > backend.max_steps:
            raise HeldClock(
                f"flow {self.path()} ran {ran} steps at time {backend.now():g} "
                f"without blocking (max_steps={backend.max_steps}); on the virtual clock a flow "
                "that never blocks holds time still"
            )

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if self.join is not None:
            self.join.child_finished(self, value, error)
        else:
            self.runner.root_finished(value, error)

    # -- blocking and waking -------------------------------------------------

    def wake_soon(self, value: Any, error: BaseException | None) -> None:
        """Unblock the task and post its resumption behind the work already ready."""
        self.waiting = None
        timer = self.timer
        if timer is not None:
            self.timer = None
            if timer.__class__ is TimerHeap:
                timer.unfile(self)  # filed by ``wake_later``
            else:
                timer.cancel()
        self.runner.backend.call_soon(self.drive, value, error)

    def cancel(self) -> None:
        """Cancel the task (see the module docstring); idempotent."""
        cancel_all((self,))

    def cancel_again(self) -> None:
        """A stop's grace is over: cancel the task anew, even in the middle of its cleanup."""
        if self.frame is not None:
            self._stack().cancel_depth = -1
            cancel_all((self,))

    def tree(self) -> list[Task]:
        """This task and its branch tasks at any depth, parents first."""
        found: list[Task] = []
        stack = [self]
        while stack:
            task = stack.pop()
            found.append(task)
            if isinstance(task.waiting, Join):
                stack.extend(child for child in task.waiting.children if isinstance(child, Task))
        return found

    def cancel_one(self) -> Iterable[Cancellable] | None:
        """Mark the task cancelled and abort its wait; the branches that must be cancelled too."""
        if self.frame is None or self._cancel_depth() >= 0:
            return None  # finished, or already cancelling
        stack = self._stack()
        stack.cancel_pending = True
        stack.cancel_depth = self.depth()
        waiting = self.waiting
        if waiting is None:
            return None  # already posted to run: the pending resume throws Cancelled
        return waiting.abort(self)

    def path(self) -> str:
        """The flows from the runner down to this task's innermost frame."""
        frames: list[Frame] = []
        task: Task | None = self
        while task is not None:
            stacked = task.frames()
            frames[:0] = stacked if task.join is not None else stacked[1:]
            task = task.join.parent if task.join is not None else None
        return flow_path(*self.runner.path_parts(PATH_ENDS), frames)


class BranchTask(Task):
    """A branch task of a join (``parallel``, ``race``, ``timeout``, ``embed``).

    It shares its runner's state through ``view``: the parent's view, or a
    part of it for ``embed``.
    """

    __slots__ = ("index", "join", "view")

    def __init__(self, runner: Owner, view: StateView, body: Frame, join: Join, index: int) -> None:
        super().__init__(runner, body)
        self.view = view  # type: ignore[misc]  # a slot here, where a root task has a property
        self.join = join
        self.index = index


Task.branch_type = BranchTask


class Stack:
    """What few tasks need, made on first need: the frames below the top one, and a
    cancellation's progress.

    A task gets one when it first runs a sub-flow (a composite step's own
    generator too) or is first cancelled.
    """

    __slots__ = ("callers", "cancel_depth", "cancel_pending")

    def __init__(self) -> None:
        #: The frames below the top one, outermost first, each resumed when the one above returns.
        self.callers: list[Frame] = []
        #: -1 until cancelled; then the stack depth down to which frames still get Cancelled.
        self.cancel_depth = -1
        #: Cancelled, and ``Cancelled`` not yet thrown: the next resumption throws it.
        self.cancel_pending = False


def cancel_all(branches: Iterable[Cancellable]) -> None:
    """Cancel ``branches`` (last started first) and all they wait on, at any depth.

    A stack, not recursion: a cancelled ``parallel`` 10,000 levels deep costs
    time linear in its depth and never reaches Python's recursion limit.
    """
    stack = list(branches)
    while stack:
        more = stack.pop().cancel_one()
        if more:
            stack.extend(more)


def _unprotected(gen: Frame) -> Frame:
    """``gen`` cancelled past a stop's grace: ``Cancelled`` at its ``yield``, and no more steps.

    A step it yields in answer closes it (``GeneratorExit`` runs its ``finally``
    blocks) and the cancellation goes on outward: a flow that catches
    ``Cancelled`` and carries on cannot outlive the grace.
    """
    try:
        gen.throw(Cancelled())
    except StopIteration as stop:
        return stop.value
    gen.close()
    raise Cancelled()
    yield  # a generator: it is pushed as a frame in place of ``gen``


INTERNAL_CODES.add(_unprotected.__code__)


class _Yielded(BaseException):
    """``drive``'s marker, as its error, for a step already yielded (see ``run_yielded``)."""


_YIELDED: Final = _Yielded()


def _without_loop_frame(error: BaseException) -> BaseException:
    """Drop the step loop's own frame from the head of ``error``'s traceback.

    Each time an error crosses a flow boundary the loop catches it, which adds
    the loop's frame; without it, the traceback reads like nested calls: each
    flow's ``yield``, outermost first, down to where the error was raised.
    """
    head = error.__traceback__
    if head is not None and head.tb_frame.f_code in LOOP_CODES:
        error.__traceback__ = head.tb_next
    return error


def locate(error: BaseException, gen: Frame, task: Task) -> None:
    """Note on ``error`` where it happened, once: the flow path and the failing line."""
    if getattr(error, "_coflow_where", None) is not None:
        return
    site = yield_site(error, gen)
    where = f"in flow {task.path()}" + (f", at {site}" if site else "")
    try:
        error._coflow_where = where  # type: ignore[attr-defined]
    except AttributeError:
        return
    add_note(error, f"coflow: {where}")


#: The code of the step loops: ``Task.drive``, and the reporting loop (``_reporting`` adds it).
LOOP_CODES = {Task.drive.__code__}


class Join:
    """A task waiting for branch tasks (``parallel``, ``race``, ``timeout``, ``embed``).

    Subclasses say what a finished branch means (``on_child``) and what the
    parent gets (``result``).  ``decide`` fixes the outcome once (the first
    failure under fail-fast, a race's winner, a timeout) and cancels the other
    branches; the parent resumes only when every branch has finished, so the
    cleanup of cancelled branches is always complete first.
    """

    __slots__ = ("children", "decided", "outcome", "parent", "pending", "timer")

    def __init__(self, parent: Task) -> None:
        self.parent = parent
        self.children: list[Task | WorkBranch] = []
        self.pending = 0
        self.decided = False
        self.outcome: tuple[Any, BaseException | None] = (None, None)
        self.timer: Any = None

    def spawn(self, body: Frame, view: StateView) -> None:
        """Start a branch that is a flow: a task of its own, first driven by the loop."""
        child = self.parent.branch_type(self.parent.runner, view, body, self, len(self.children))
        self.children.append(child)
        self.pending += 1
        self.parent.runner.backend.call_soon(child.drive, None, None)

    def start_work(self, fn: Callable[[], Any]) -> None:
        """Start a branch that is a plain callable: backend work, with no task to drive."""
        branch = WorkBranch(self, len(self.children))
        self.children.append(branch)
        self.pending += 1
        parent = self.parent
        if parent.reporting:
            branch.step = parent.opened[max(parent.opened)]  # type: ignore[attr-defined]
            report(parent.runner, "work_started", branch.step, 1)
        branch.handle = start_work(parent.runner.backend, fn, (), branch)

    def on_child(self, index: int, value: Any, error: BaseException | None) -> None:
        """A branch finished before the join was decided."""
        self.decide(value, error)

    def result(self) -> tuple[Any, BaseException | None]:
        """What the parent resumes with once every branch has finished."""
        return self.outcome

    def decide(self, value: Any, error: BaseException | None) -> None:
        """Fix the outcome (first call only) and cancel every branch still running."""
        if self._fix(value, error):
            cancel_all(self.children)

    def abort(self, task: Task) -> list[Task | WorkBranch]:
        """The parent is cancelled: every branch is cancelled; the parent resumes after them."""
        return self.children if self._fix(None, Cancelled()) else []

    def _fix(self, value: Any, error: BaseException | None) -> bool:
        if self.decided:
            return False
        self.decided = True
        self.outcome = (value, error)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return True

    def child_finished(
        self, child: Task | WorkBranch, value: Any, error: BaseException | None
    ) -> None:
        self.pending -= 1
        if not self.decided:
            self.on_child(child.index, value, error)
        if self.pending == 0:
            self.children = []  # each branch refers back to the join: no cycle left for the GC
            parent = self.parent
            parent.waiting = None
            value, error = self.result()
            parent.runner.backend.call_soon(parent.drive, value, error)


class WorkBranch:
    """A callable branch of ``parallel`` or ``race``: the backend's work handle, joined directly."""

    __slots__ = ("handle", "index", "join", "step")
    handle: Handle
    #: The ``parallel`` or ``race`` step, for an instrumented runner's ``work_ended``.
    step: Any

    def __init__(self, join: Join, index: int) -> None:
        self.join = join
        self.index = index

    def __call__(self, value: Any, error: BaseException | None) -> None:
        """The work has ended: the backend's ``done``, with no bound method made per branch."""
        join = self.join
        if join.parent.reporting:
            report(join.parent.runner, "work_ended", self.step, 1, error)
        join.child_finished(self, value, error)

    def cancel_one(self) -> None:
        self.handle.cancel()  # the backend still reports the end, once, through ``done``
