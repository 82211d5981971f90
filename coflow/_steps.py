"""The steps a flow yields: small frozen values, one class each, built by lowercase constructors.

A step only describes what to do; the scheduler does it.  Because steps are
plain comparable values, a flow can be unit-tested by stepping its generator
by hand and comparing what it yields.  Every step is also iterable, so
``x = yield from run(fetch)`` gives a type checker the step's own result type.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import FunctionType
from typing import TYPE_CHECKING, Any

from ._errors import InvalidStep
from ._flow import flow_kind, is_flow_like, not_a_flow
from ._missing import MISSING, MissingType
from ._retry import Backoff, RetryPolicy
from ._step import Step, describe
from ._validate import (
    check_choice,
    check_delay,
    check_hashable,
    check_optional_delay,
    is_hashable,
)
from ._values import value

if TYPE_CHECKING:
    from ._runner import Runner  # noqa: F401 - named, as a string, in Spawn's base


ON_ERROR = ("fail_fast", "complete_all")
_INFINITY = float("inf")


def reusable(where: str, body: Any) -> Any:
    """A body that runs many times cannot be a generator object, which runs only once."""
    if flow_kind(body) == "generator":
        raise TypeError(
            f"{where}: got a generator object, which can run only once; "
            "give a Flow, a generator function or a step"
        )
    return body


def _tasks(where: str, tasks: Any) -> Any:
    """Freeze an iterable of tasks into a tuple; keep a function of the state as it is."""
    if callable(tasks) and not isinstance(tasks, Iterable):
        return tasks
    if not is_tasks(tasks):
        raise TypeError(
            f"{where}: tasks must be an iterable of tasks or a function of the state, got {tasks!r}"
        )
    return tuple(tasks)


def is_tasks(tasks: Any) -> bool:
    """Whether ``tasks`` can be iterated as tasks: a string or a mapping is a mistake."""
    return isinstance(tasks, Iterable) and not isinstance(tasks, (str, bytes, Mapping))


def _collect_as(where: str, key: Any) -> Any:
    if key is not None:
        check_hashable(where, "collect_as", key, " (a dict key or a dataclass field name)")
    return key


@value(repr=False)
class Sequence(Step[Any]):
    steps: tuple[Any, ...]


def sequence(*steps: Any) -> Sequence:
    """Run ``steps`` in order; ``yield`` gives the last one's result (``None`` when empty)."""
    return Sequence(steps)


@value(repr=False)
class Repeat(Step[None]):
    body: Any
    times: int | None = None


def repeat(body: Any, times: int | None = None) -> Repeat:
    """Run ``body`` ``times`` times, or forever; ``yield`` gives ``None``."""
    if times is not None:
        if isinstance(times, bool) or not isinstance(times, int):
            raise TypeError(f"repeat: times must be an int or None, got {times!r}")
        if times < 0:
            raise ValueError(f"repeat: times must be >= 0, got {times!r}")
    return Repeat(reusable("repeat", body), times)


class _Suspends:
    """A step a task blocks on: its ``abort`` is how a cancellation stops the wait (SPEC §3)."""

    __slots__ = ()

    def abort(self, task: Any) -> None:
        """Wake the task now (dropping its timer); its resumption then raises ``Cancelled``."""
        task.runner.unblock(task)
        task.wake_soon(None, None)


@value(repr=False)
class Wait(_Suspends, Step[None]):
    seconds: float


def wait(seconds: float) -> Wait:
    """Pause for ``seconds``; ``yield`` gives ``None``."""
    if seconds.__class__ is not float or not 0.0 <= seconds < _INFINITY:  # NaN fails both
        seconds = check_delay("wait", "seconds", seconds)
    step = _new(Wait)
    _set_seconds(step, seconds)
    return step


# The hottest constructors skip the dataclass __init__ and set the slot directly.
_new = object.__new__
_set_seconds = Wait.__dict__["seconds"].__set__


@value(repr=False)
class WaitUntil(_Suspends, Step[Any]):
    predicate: Callable[[Any], Any]
    timeout: float | None = None


def wait_until(predicate: Callable[[Any], Any], timeout: float | None = None) -> WaitUntil:
    """Block until ``predicate(state)`` is truthy; ``yield`` gives that state.

    Re-checked after every signal and state change, never on a timer.  Raises
    ``FlowTimeout`` after ``timeout`` seconds, and whatever ``predicate`` raises.
    """
    if not callable(predicate):
        raise TypeError(f"wait_until: predicate must be callable, got {predicate!r}")
    return WaitUntil(predicate, check_optional_delay("wait_until", "timeout", timeout))


@value(repr=False)
class Debounce(_Suspends, Step[Any]):
    seconds: float


def debounce(seconds: float) -> Debounce:
    """Wait until ``seconds`` pass with no signal or state change; ``yield`` gives the state."""
    return Debounce(check_delay("debounce", "seconds", seconds))


@value(repr=False)
class Receive(_Suspends, Step[Any]):
    match: Callable[[Any], Any] | None = None
    timeout: float | None = None


def receive(match: Callable[[Any], Any] | None = None, timeout: float | None = None) -> Receive:
    """Take the oldest mailbox message for which ``match`` is truthy; ``yield`` gives it.

    Blocks until one arrives; raises ``FlowTimeout`` after ``timeout`` seconds.
    """
    if match is not None and not callable(match):
        raise TypeError(f"receive: match must be callable or None, got {match!r}")
    return Receive(match, check_optional_delay("receive", "timeout", timeout))


@value(repr=False)
class SetState(Step[Any]):
    fn: Callable[[Any], Any]


_set_fn = SetState.__dict__["fn"].__set__


def set_state(fn: Callable[[Any], Any]) -> SetState:
    """Replace the state with ``fn(state)``; ``yield`` gives the new state."""
    if not callable(fn):
        raise TypeError(f"set_state: fn must be callable, got {fn!r}")
    step = _new(SetState)
    _set_fn(step, fn)
    return step


@value(repr=False)
class GetState(Step[Any]):
    pass


_GET_STATE = GetState()


def get_state() -> GetState:
    """``yield`` gives the current state."""
    return _GET_STATE


@value(repr=False)
class Run(Step[Any]):
    fn: Callable[..., Any]
    policy: RetryPolicy = RetryPolicy()
    timeout: float | None = None

    def __repr__(self) -> str:
        """``run(fn=push, retries=3, backoff='exponential')``: the options as they were given."""
        shown = [f"fn={describe(self.fn)}"]
        for field in dataclasses.fields(RetryPolicy):
            given = getattr(self.policy, field.name)
            if given != field.default:
                shown.append(f"{field.name}={describe(given)}")
        if self.timeout is not None:
            shown.append(f"timeout={self.timeout!r}")
        return f"run({', '.join(shown)})"


_NO_RETRY = RetryPolicy()


def run(
    fn: Callable[..., Any],
    *,
    retries: int = 0,
    backoff: Backoff = "constant",
    base_delay: float = 0.0,
    max_delay: float | None = None,
    jitter: bool = False,
    timeout: float | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    retry: RetryPolicy | None = None,
) -> Run:
    """Call ``fn(state)`` as concurrent work on the backend, retrying as asked.

    ``yield`` gives the new state for ``Ok``, else the returned value.  When the
    last attempt fails it raises the error itself (no retries) or
    ``RetriesExhausted`` (with retries).
    """
    if not callable(fn):
        raise TypeError(f"run: fn must be callable, got {fn!r}")
    options = (retries, backoff, base_delay, max_delay, jitter, retry_on)
    if retry is not None:
        if options != _DEFAULT_OPTIONS:
            raise TypeError(
                f"run({describe(fn)}): pass retry=RetryPolicy(...) or separate retry options, "
                "not both"
            )
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"run({describe(fn)}): retry must be a RetryPolicy, got {retry!r}")
        policy = retry
    elif options == _DEFAULT_OPTIONS:
        policy = _NO_RETRY
    else:
        try:
            policy = _policy(options)
        except (TypeError, ValueError) as error:
            message = str(error).removeprefix("RetryPolicy: ")
            raise type(error)(f"run({describe(fn)}): {message}") from None
    if timeout is not None:
        timeout = check_delay(f"run({describe(fn)})", "timeout", timeout)
    return Run(fn, policy, timeout)


def _policy(options: tuple[Any, ...]) -> RetryPolicy:
    """The policy for ``run``'s separate options; the same options give the same, shared one."""
    if not is_hashable(options):
        return RetryPolicy(*options)  # e.g. retry_on given as a list: nothing to share
    return _policies(options)


@functools.lru_cache(maxsize=256)
def _policies(options: tuple[Any, ...]) -> RetryPolicy:
    return RetryPolicy(*options)


_DEFAULT_OPTIONS = (0, "constant", 0.0, None, False, (Exception,))


@value(repr=False)
class Parallel(Step[list[Any]]):
    tasks: Any
    collect_as: Hashable | None = None
    on_error: str = "fail_fast"


def parallel(
    tasks: Any, *, collect_as: Hashable | None = None, on_error: str = "fail_fast"
) -> Parallel:
    """Run all ``tasks`` concurrently; ``yield`` gives their results in task order.

    Tasks are zero-argument callables (backend work) or flows (sub-flows on the
    same state).  ``fail_fast`` cancels the rest at the first failure and raises
    it; ``complete_all`` puts a ``Failure`` in place of each failed result.
    """
    check_choice("parallel", "on_error", on_error, ON_ERROR)
    return Parallel(_tasks("parallel", tasks), _collect_as("parallel", collect_as), on_error)


@value(repr=False)
class Race(Step[Any]):
    tasks: Any
    collect_as: Hashable | None = None


def race(tasks: Any, *, collect_as: Hashable | None = None) -> Race:
    """Run ``tasks`` concurrently; the first to finish wins and the others are cancelled.

    ``yield`` gives the winner's result, or raises its error if it failed.
    """
    return Race(_tasks("race", tasks), _collect_as("race", collect_as))


@value(repr=False)
class Each(Step[Any]):
    source: Hashable | Callable[[Any], Iterable[Any]]
    fn: Callable[..., Any]


def each(key_or_fn: Hashable | Callable[[Any], Iterable[Any]], fn: Callable[..., Any]) -> Each:
    """Call ``fn(item, state)`` for each item of ``state[key]`` (or of ``key_or_fn(state)``).

    ``fn`` returns ``Ok(state)``, ``Skip(reason)`` or ``Error(reason)``; or it
    is a generator function ``fn(item)`` run as a sub-flow per item.  The state
    is committed after every item; ``yield`` gives the state after the loop.
    """
    if not callable(fn):
        raise TypeError(f"each: fn must be callable, got {fn!r}")
    if not callable(key_or_fn):
        check_hashable(
            "each", "the key", key_or_fn, " (a dict key or a dataclass field name) or a function"
        )
    return Each(key_or_fn, fn)


@value(repr=False)
class Branch(Step[Any]):
    selector: Callable[[Any], Any]
    cases: Mapping[Any, Any]
    default: Any = None


def branch(selector: Callable[[Any], Any], cases: Mapping[Any, Any], default: Any = None) -> Branch:
    """Run ``cases[selector(state)]`` (or ``default``); ``yield`` gives its result.

    With no matching case and no default, ``KeyError`` is raised at the ``yield``.
    """
    if not callable(selector):
        raise TypeError(f"branch: selector must be callable, got {selector!r}")
    if not isinstance(cases, Mapping):
        raise TypeError(f"branch: cases must be a mapping, got {cases!r}")
    for body in cases.values():
        reusable("branch", body)
    return Branch(selector, dict(cases), reusable("branch", default))


@value(repr=False)
class Embed(Step[Any]):
    flow: Any
    get: Callable[[Any], Any]
    put: Callable[[Any, Any], Any]


def embed(flow: Any, get: Callable[[Any], Any], put: Callable[[Any, Any], Any]) -> Embed:
    """Run ``flow`` on a part of the state.

    It sees ``get(state)``, and each of its updates ``u`` becomes ``put(state, u)``.
    """
    if not (callable(get) and callable(put)):
        raise TypeError("embed: get and put must be callable")
    return Embed(_step_or_flow("embed", flow), get, put)


@value(repr=False)
class Timeout(Step[Any]):
    step: Any
    seconds: float
    default: Any = MISSING


def timeout(step: Any, seconds: float, default: Any | MissingType = MISSING) -> Timeout:
    """Run ``step``, cancelled after ``seconds``; then give ``default`` or raise ``FlowTimeout``."""
    seconds = check_delay("timeout", "seconds", seconds)
    return Timeout(_step_or_flow("timeout", step), seconds, default)


def _step_or_flow(where: str, body: Any) -> Any:
    """``body``, or ``InvalidStep`` naming it, as yielding it would raise."""
    if not is_flow_like(body):
        raise InvalidStep(not_a_flow(where, body))
    return body


def _check_child(where: str, flow: Any, ref: Any, notify: Any) -> None:
    """Checks for ``call``/``spawn``; a plain generator function with no options passes at once."""
    if flow.__class__ is FunctionType and ref is None and notify is None:
        if flow.__code__.co_flags & inspect.CO_GENERATOR:
            return
    if not is_flow_like(flow):
        raise TypeError(not_a_flow(where, flow))
    check_hashable(f"{where}({describe(flow)})", "ref", ref)
    if notify is not None and not (callable(notify) or hasattr(notify, "put_nowait")):
        raise TypeError(
            f"{where}({describe(flow)}): notify must be a callable or a queue with put_nowait, "
            f"got {notify!r}"
        )


@value(repr=False)
class Call(Step[Any]):
    flow: Any
    initial_state: Any = MISSING
    ref: Hashable | None = None
    timeout: float | None = None
    timeout_value: Any = MISSING
    notify: Any = None


# ``call`` builds its step through the slot descriptors, as ``wait`` does: it is often in loops.
_CALL_SLOTS = [Call.__dict__[field.name].__set__ for field in dataclasses.fields(Call)]


def call(
    flow: Any,
    *,
    initial_state: Any = MISSING,
    ref: Hashable | None = None,
    timeout: float | None = None,
    timeout_value: Any = MISSING,
    notify: Any = None,
) -> Call:
    """Start ``flow`` as a child runner and wait for it; ``yield`` gives its final state.

    A failed (or stopped) child raises ``ChildFailed``, whose ``__cause__`` is
    the child's error.  After ``timeout`` seconds the child is stopped and
    ``yield`` gives ``timeout_value``, or raises ``FlowTimeout`` without one.
    With a ``ref``, a second call of the same ``(flow, ref)`` in this runner
    waits for the same child, or gives its result if it has finished.
    """
    _check_child("call", flow, ref, notify)
    if timeout is not None:
        timeout = check_delay(f"call({describe(flow)})", "timeout", timeout)
    step = _new(Call)
    set_flow, set_initial_state, set_ref, set_timeout, set_timeout_value, set_notify = _CALL_SLOTS
    set_flow(step, flow)
    set_initial_state(step, initial_state)
    set_ref(step, ref)
    set_timeout(step, timeout)
    set_timeout_value(step, timeout_value)
    set_notify(step, notify)
    return step


@value(repr=False)
class Spawn(Step["Runner"]):
    flow: Any
    initial_state: Any = MISSING
    ref: Hashable | None = None
    notify: Any = None


def spawn(
    flow: Any,
    *,
    initial_state: Any = MISSING,
    ref: Hashable | None = None,
    notify: Any = None,
) -> Spawn:
    """Start ``flow`` as a child runner and go on at once; ``yield`` gives its ``Runner``.

    The child lives until it ends or this runner is stopped or fails.  With a
    ``ref``, a second spawn of the same ``(flow, ref)`` in this runner gives
    the child already started.
    """
    _check_child("spawn", flow, ref, notify)
    return Spawn(flow, initial_state, ref, notify)


#: The public constructors, so an uncalled one yielded by mistake gets a hint.
CONSTRUCTORS: frozenset[Callable[..., Any]] = frozenset(
    {
        sequence,
        repeat,
        wait,
        wait_until,
        debounce,
        receive,
        set_state,
        get_state,
        run,
        parallel,
        race,
        each,
        branch,
        embed,
        timeout,
        call,
        spawn,
    }
)
