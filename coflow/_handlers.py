"""One handler per step type: what the scheduler does when a flow yields that step.

A handler gets the task and the step.  It returns the step's result at once,
or ``SUSPEND`` after arranging for something (a timer, finished work, a state
change, finished branches) to resume the task.  Steps made of other steps
(``sequence``, ``repeat``, ``run``, ``each``, ...) push one of the small
generators below as a frame, so they nest without recursion.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Hashable
from typing import Any

from ._backend import Handle
from ._errors import FlowTimeout, InvalidStep, RetriesExhausted, StepFailed
from ._flow import (
    NOT_A_FLOW,
    flow_kind,
    has_started,
    instantiate,
    is_flow_like,
    is_taken,
    taken,
    used_before,
)
from ._instrument import WORK_TYPES, report
from ._lasting import start_work
from ._location import INTERNAL_CODES
from ._missing import MISSING
from ._reporting import QUIET_CODES, QUIET_STEPS
from ._results import Error, Failure, Ok, Retry, Skip, Update
from ._runner import StateView
from ._scheduler import SUSPEND, Frame, Join, Task
from ._step import Step, describe
from ._steps import (
    CONSTRUCTORS,
    Branch,
    Each,
    Embed,
    GetState,
    Parallel,
    Race,
    Repeat,
    Run,
    Sequence,
    Timeout,
    Wait,
    is_tasks,
)
from ._validate import is_hashable
from ._values import value


def internal(function: Callable[..., Frame]) -> Callable[..., Frame]:
    """Mark a generator as the scheduler's own, so errors never name it as a flow."""
    INTERNAL_CODES.add(function.__code__)
    return function


# -- state and time: ``set_state`` and ``wait`` are run by the step loop itself ------


def handle_get_state(task: Task, step: GetState) -> Any:
    return task.view.state


# -- work --------------------------------------------------------------------


class Work:
    """Internal step: run ``fn(*args)`` once as backend work; ``yield`` gives its raw result.

    Yielded fresh for every attempt, it is also what the task waits on: it
    holds the work's handle and the attempt's optional timer.
    """

    __slots__ = (
        "args", "attempt", "fn", "handle", "since", "task", "timed_out", "timeout", "timer"
    )
    task: Task
    handle: Handle
    timer: Handle
    timed_out: bool

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        timeout: float | None = None,
        attempt: int = 1,
    ) -> None:
        self.fn = fn
        self.args = args
        #: Which attempt of its ``run`` this is (from 1); and when it started (``inspect``).
        self.attempt = attempt
        self.since = 0.0
        self.timeout = timeout  # ``timer`` and ``timed_out`` are set only when there is one

    def done(self, value: Any, error: BaseException | None) -> None:
        if self.timeout is not None:
            self.timer.cancel()
            if self.timed_out:
                value, error = None, FlowTimeout(f"run({describe(self.fn)})", self.timeout)
        self.task.drive(value, error)

    def time_out(self) -> None:
        self.timed_out = True
        self.handle.cancel()

    def abort(self, task: Task) -> None:
        """Cancel the work; the backend reports its end, and only then is the task resumed."""
        if self.timeout is not None:
            self.timer.cancel()
        self.handle.cancel()


def handle_work(task: Task, work: Work) -> Any:
    backend = task.runner.backend
    work.task = task
    work.since = backend.now()
    work.handle = start_work(backend, work.fn, work.args, work.done)
    if work.timeout is not None:
        work.timed_out = False
        work.timer = backend.call_later(work.timeout, work.time_out)
    task.waiting = work
    return SUSPEND


class _OnlyAttempt(Work):
    """``run`` with no retries and no timeout: one attempt, read as ``_attempts`` reads one.

    The commonest ``run`` skips the retry loop's generator: a step costs one
    work start and one resume, as the same work written directly would.
    """

    __slots__ = ()

    def done(self, value: Any, error: BaseException | None) -> None:
        task = self.task
        if error is None and not task.cancel_pending:  # a cancelled attempt commits nothing
            cls = value.__class__
            if cls is Ok:
                value = value.state
                task.view.replace_state(value)
            elif cls is Update:
                value, error = _updated(task, value)
            elif cls is Retry:
                if value.new_state is not MISSING:
                    task.view.replace_state(value.new_state)
                failed = StepFailed(value)
                value, error = None, RetriesExhausted(1, failed)
                error.__cause__ = failed
            elif cls is Error:
                value, error = None, _error_of(value.reason)
        task.drive(value, error)


def handle_run(task: Task, step: Run) -> Any:
    if step.timeout is None and not step.policy.retries:
        return handle_work(task, _OnlyAttempt(step.fn, (task.view.state,)))
    task.push(_attempts(task, step))
    return None


def _error_of(reason: Any) -> BaseException:
    return reason if isinstance(reason, BaseException) else StepFailed(reason)


def _updated(task: Task, update: Update[Any]) -> tuple[Any, BaseException | None]:
    """Commit ``update`` to the state as it is now; if its function raises, that is the error."""
    view = task.view
    try:
        state = update.fn(view.state)
    except BaseException as error:  # SPEC §9: whatever it raises fails only the attempt
        return None, error
    view.replace_state(state)
    return state, None


@internal
def _attempts(task: Task, step: Run) -> Frame:
    """``run``: call ``fn(state)`` until a result ends it or the retries are used up."""
    policy = step.policy
    fn, timeout, retries, retry_on = step.fn, step.timeout, policy.retries, policy.retry_on
    view = task.view
    attempt = 0
    while True:
        attempt += 1
        try:
            result = yield Work(fn, (view.state,), timeout, attempt)
            cls = result.__class__
            if cls is Update:  # applied to the state as it is now, as a signal would be
                result, cls = Ok(result.fn(view.state)), Ok
        except retry_on as error:
            last_error: BaseException = error
        else:
            if cls is Ok:
                view.replace_state(result.state)
                return result.state
            if cls is Retry:
                if result.new_state is not MISSING:
                    view.replace_state(result.new_state)
                last_error = StepFailed(result)
                if attempt > retries:
                    raise RetriesExhausted(attempt, last_error) from last_error
            elif cls is Error:
                last_error = _error_of(result.reason)
            else:
                return result
        if attempt > retries:
            if retries == 0:
                raise last_error
            raise RetriesExhausted(attempt, last_error) from last_error
        delay = policy.delay(attempt, task.runner.backend.random) if policy.waits else 0.0
        if task.reporting:
            report(task.runner, "retry", step, attempt, delay, last_error)
        if delay > 0:
            yield Wait(delay)


# -- composition ---------------------------------------------------------------


def handle_sequence(task: Task, step: Sequence) -> Any:
    task.push(_in_order(step.steps))
    return None


@internal
def _in_order(steps: tuple[Any, ...]) -> Frame:
    result = None
    for step in steps:
        result = yield step
    return result


def handle_repeat(task: Task, step: Repeat) -> Any:
    task.push(_repeated(task, step.body, step.times))
    return None


@internal
def _repeated(task: Task, body: Any, times: int | None) -> Frame:
    rounds = range(times) if times is not None else iter(int, 1)
    if isinstance(body, Step):
        for _ in rounds:
            yield body
    else:
        for _ in rounds:
            yield instantiate(body, "repeat", task)
    return None


def handle_branch(task: Task, step: Branch) -> Any:
    key = step.selector(task.view.state)
    body = step.cases.get(key, step.default)
    if body is None:
        raise KeyError(f"flow {task.path()}: branch has no case for {key!r} and no default")
    task.push(instantiate(body, "branch", task))
    return None


@value
class Tick(Step[None]):
    """Internal: a step that does nothing, so a long synchronous loop counts its steps."""


_TICK = Tick()


def handle_tick(task: Task, step: Tick) -> None:
    return None


WORK_TYPES.update((Work, _OnlyAttempt))
QUIET_STEPS.add(Tick)
QUIET_CODES.add(_attempts.__code__)


def handle_each(task: Task, step: Each) -> Any:
    task.push(_each_item(task, step))
    return None


def _items(task: Task, source: Any) -> Any:
    state = task.view.state
    if callable(source):
        items = source(state)
    elif isinstance(state, dict) and source in state:
        items = state[source]
    elif dataclasses.is_dataclass(state) and isinstance(source, str) and hasattr(state, source):
        items = getattr(state, source)
    else:
        raise KeyError(
            f"flow {task.path()}: each({source!r}): the state has no such key "
            f"(state: {type(state).__name__})"
        )
    try:
        return iter(items)
    except TypeError:
        raise TypeError(
            f"flow {task.path()}: each({describe(source)}) got {items!r}, which is not iterable"
        ) from None


@internal
def _each_item(task: Task, step: Each) -> Frame:
    """``each``: one item at a time, committing the state after every item."""
    view = task.view
    fn = step.fn
    items = _items(task, step.source)
    if flow_kind(fn) == "function":
        for item in items:
            yield fn(item)
        return view.state
    for item in items:
        result = fn(item, view.state)
        cls = result.__class__
        if cls is Ok:
            view.replace_state(result.state)
        elif cls is Error:
            raise _error_of(result.reason)
        elif cls is not Skip:
            raise TypeError(
                f"flow {task.path()}: each callback {describe(fn)} must return Ok, Skip or "
                f"Error, got {result!r}"
            )
        yield _TICK
    return view.state


# -- branches: parallel, race, timeout, embed -----------------------------------


def _collect(task: Task, key: Hashable, value: Any) -> Any:
    """The state with ``value`` stored under ``key`` (``collect_as``)."""
    state = task.view.state
    if isinstance(state, dict):
        return {**state, key: value}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **{str(key): value})
    raise TypeError(
        f"flow {task.path()}: collect_as={key!r} needs a dict or dataclass state, "
        f"got {type(state).__name__} {state!r}"
    )


def _branches(task: Task, tasks: Any, where: str) -> list[Any]:
    """The branches of ``parallel``/``race``: a fresh generator per flow, callables as they are."""
    if not isinstance(tasks, tuple):
        tasks = _tasks_of(task, tasks, where)
    branches = []
    for item in tasks:
        if is_flow_like(item):
            branches.append(instantiate(item, where, task))
        elif callable(item):
            branches.append(item)
        else:
            raise TypeError(
                f"flow {task.path()}: {where} task must be a callable or a flow, got {item!r}"
            )
    return branches


def _tasks_of(task: Task, fn: Callable[[Any], Any], where: str) -> tuple[Any, ...]:
    """The tasks a function of the state gives; ``TypeError`` naming the flow if not tasks."""
    made = fn(task.view.state)
    if made.__class__ is not list and not is_tasks(made):
        raise TypeError(
            f"flow {task.path()}: {where}(tasks={describe(fn)}) gave {made!r}, "
            "which is not an iterable of tasks"
        )
    return tuple(made)


def _start_branches(join: Join, branches: list[Any], task: Task) -> Any:
    """Start every branch under ``join`` (a generator is never callable); suspend ``task``."""
    for branch in branches:
        if callable(branch):
            join.start_work(branch)
        else:
            join.spawn(branch, task.view)
    task.waiting = join
    task.blocked_since_now()
    return SUSPEND


class _AllJoin(Join):
    __slots__ = ("collect_as", "complete_all", "results")

    def __init__(self, parent: Task, step: Parallel, size: int) -> None:
        super().__init__(parent)
        self.collect_as = step.collect_as
        self.complete_all = step.on_error == "complete_all"
        self.results: list[Any] = [None] * size

    def on_child(self, index: int, value: Any, error: BaseException | None) -> None:
        if error is None:
            self.results[index] = value
        elif self.complete_all:
            self.results[index] = Failure(error)
        else:
            self.decide(None, error)

    def result(self) -> tuple[Any, BaseException | None]:
        if self.decided:
            return self.outcome
        return _collected(self.parent, self.collect_as, self.results)


class _RaceJoin(Join):
    __slots__ = ("collect_as",)

    def __init__(self, parent: Task, step: Race) -> None:
        super().__init__(parent)
        self.collect_as = step.collect_as

    def result(self) -> tuple[Any, BaseException | None]:
        value, error = self.outcome
        if error is not None:
            return self.outcome
        return _collected(self.parent, self.collect_as, value)


def _collected(task: Task, key: Hashable | None, value: Any) -> tuple[Any, BaseException | None]:
    if key is not None:
        try:
            task.view.replace_state(_collect(task, key, value))
        except Exception as error:
            return None, error
    return value, None


def handle_parallel(task: Task, step: Parallel) -> Any:
    branches = _branches(task, step.tasks, "parallel")
    if not branches:
        value, error = _collected(task, step.collect_as, [])
        if error is not None:
            raise error
        return value
    return _start_branches(_AllJoin(task, step, len(branches)), branches, task)


def handle_race(task: Task, step: Race) -> Any:
    branches = _branches(task, step.tasks, "race")
    if not branches:
        raise ValueError(f"flow {task.path()}: race has no tasks, so it could never finish")
    return _start_branches(_RaceJoin(task, step), branches, task)


class _TimeoutJoin(Join):
    __slots__ = ("step",)

    def __init__(self, parent: Task, step: Timeout) -> None:
        super().__init__(parent)
        self.step = step

    def expire(self) -> None:
        self.timer = None
        if self.step.default is MISSING:
            self.decide(
                None, FlowTimeout(f"timeout({describe(self.step.step)})", self.step.seconds)
            )
        else:
            self.decide(self.step.default, None)


def handle_timeout(task: Task, step: Timeout) -> Any:
    join = _TimeoutJoin(task, step)
    join.spawn(instantiate(step.step, "timeout", task), task.view)
    join.timer = task.runner.backend.call_later(step.seconds, join.expire)
    task.waiting = join
    task.blocked_since_now()
    return SUSPEND


class _Lens:
    """The part of a state an embedded flow sees: ``get(state)``, written back with ``put``."""

    __slots__ = ("get", "parent", "put")

    def __init__(
        self, parent: StateView, get: Callable[[Any], Any], put: Callable[[Any, Any], Any]
    ) -> None:
        self.parent = parent
        self.get = get
        self.put = put

    @property
    def state(self) -> Any:
        return self.get(self.parent.state)

    def replace_state(self, new_state: Any) -> None:
        self.parent.replace_state(self.put(self.parent.state, new_state))


def handle_embed(task: Task, step: Embed) -> Any:
    join = Join(task)
    join.spawn(instantiate(step.flow, "embed", task), _Lens(task.view, step.get, step.put))
    task.waiting = join
    task.blocked_since_now()
    return SUSPEND


# -- sub-flows and mistakes -------------------------------------------------------


def push_frame(task: Task, gen: Frame) -> Any:
    """A generator object yielded: run it as a sub-flow, once."""
    if has_started(gen) or (taken and is_taken(gen)):  # a generator object runs once
        raise TypeError(f"flow {task.path()} yielded {used_before(gen)}")
    task.push(gen)
    return None



def handle_other(task: Task, value: Any) -> Any:
    """A value of no step type: a flow run as a sub-flow, or a mistake named at its ``yield``."""
    kind = flow_kind(value)
    if kind == "step":  # a subclass of Step that is none of coflow's own steps
        raise InvalidStep(
            f"flow {task.path()} yielded {value!r}, a {type(value).__qualname__}: coflow has "
            "no handler for this subclass of Step; build it from coflow's steps, or yield a flow"
        )
    if kind is not None:
        task.push(instantiate(value, "sub-flow", task))
        return None
    hint = ""
    if is_hashable(value) and value in CONSTRUCTORS:
        arguments = "..." if inspect.signature(value).parameters else ""
        hint = f"; did you mean to call it, as in {value.__name__}({arguments})?"
    raise InvalidStep(f"flow {task.path()} yielded {value!r}, which {NOT_A_FLOW}{hint}")
