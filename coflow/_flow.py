"""``Flow``: a named body (generator function or step tree) with its initial state.

Also the one place that turns anything accepted as a flow (a ``Flow``, a
generator function, a generator object or a step) into a fresh generator
for the scheduler to drive.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Generator
from types import FunctionType
from typing import Any, overload

from ._errors import InvalidStep
from ._missing import MISSING
from ._step import Step

#: What a flow function returns: a generator that yields steps (or flows, run as
#: sub-flows), is sent each one's result, and may return anything (its state is the result).
FlowGenerator = Generator[Any, Any, Any]


class Flow:
    """A flow definition: ``start(flow)`` runs ``body`` from ``initial_state``.

    A flow built from a generator function stays callable: ``flow(*args)``
    returns a new generator, to step by hand or to run as a sub-flow.
    """

    __slots__ = ("__wrapped__", "body", "initial_state", "name")

    def __init__(
        self,
        body: Callable[..., FlowGenerator] | Step[Any],
        initial_state: Any = None,
        name: str | None = None,
    ) -> None:
        kind = flow_kind(body)
        if kind == "step":
            default_name = type(body).__name__.lower()
        elif kind == "function":
            default_name = getattr(body, "__name__", "flow")  # a partial has none
            self.__wrapped__ = body
        else:
            raise TypeError(f"coflow.flow: expected a generator function or a step, got {body!r}")
        self.body = body
        self.initial_state = initial_state
        self.name = name or default_name

    def __call__(self, *args: Any, **kwargs: Any) -> FlowGenerator:
        if isinstance(self.body, Step):
            if args or kwargs:
                raise TypeError(f"flow {self.name!r} is a step tree and takes no arguments")
            return step_body(self.body)
        return self.body(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}>"


@overload
def flow(
    body: Callable[..., FlowGenerator] | Step[Any],
    *,
    initial_state: Any = None,
    name: str | None = None,
) -> Flow: ...
@overload
def flow(
    *, initial_state: Any = None, name: str | None = None
) -> Callable[[Callable[..., FlowGenerator]], Flow]: ...


def flow(
    body: Any = MISSING, *, initial_state: Any = None, name: str | None = None
) -> Flow | Callable[[Callable[..., FlowGenerator]], Flow]:
    """Make a ``Flow``: ``@flow(initial_state=...)`` on a generator function, or ``flow(step)``."""
    if body is not MISSING:
        return Flow(body, initial_state, name)

    def decorate(function: Callable[..., FlowGenerator]) -> Flow:
        return Flow(function, initial_state, name)

    return decorate


def step_body(step: Step[Any]) -> FlowGenerator:
    """Run one step as a flow body; the flow's result is the step's result."""
    return (yield step)


def flow_name(body: Any) -> str:
    """The name a flow-like shows in errors and as a runner's default name."""
    if body.__class__ is FunctionType:
        return body.__name__
    if isinstance(body, Flow):
        return body.name
    if flow_kind(body) == "generator":
        return str(body.__name__)
    if isinstance(body, Step):
        return repr(body)
    return str(getattr(body, "__name__", repr(body)))


def flow_kind(value: Any) -> str | None:
    """The one rule for "is this a flow?": which kind of flow ``value`` is, or None.

    ``"function"``: a generator function (or a method, or a ``functools.partial``
    of one, anything ``inspect`` calls a generator function); ``"generator"``: a
    generator object, which runs once; ``"flow"``: a ``Flow``; ``"step"``: a step,
    run as a flow of that one step.
    """
    code = getattr(value, "__code__", None)
    if code is not None:  # a function or method, the commonest: one flag says it all
        return "function" if code.co_flags & inspect.CO_GENERATOR else None
    if isinstance(value, Flow):
        return "flow"
    if isinstance(value, Step):
        return "step"
    if inspect.isgenerator(value):
        return "generator"
    if inspect.isgeneratorfunction(value):
        return "function"
    return None


def is_flow_like(value: Any) -> bool:
    """Whether ``value`` is a flow of any kind (``flow_kind``)."""
    return flow_kind(value) is not None


#: What is wrong with a value given or yielded where a flow belongs.
NOT_A_FLOW = (
    "is neither a step nor a flow (a Flow, a generator function, a generator object or a step)"
)


def not_a_flow(where: str, body: Any) -> str:
    """The message for ``body``, given to ``where`` where a flow belongs."""
    return f"{where}: {body!r} {NOT_A_FLOW}"


def instantiate(body: Any, where: str, task: Any = None) -> FlowGenerator:
    """A fresh generator for a flow-like, to run at once; else ``InvalidStep`` naming ``where``.

    A generator object is taken: given again, or already started or ended, it
    is refused.  ``task``, the task whose step asks, names its flow in errors.
    """
    kind = flow_kind(body)
    if kind == "function":
        return body()  # type: ignore[no-any-return]
    if kind == "generator":
        return take(body, where, task)
    if kind == "flow":
        return body()  # type: ignore[no-any-return]
    if kind == "step":
        return step_body(body)
    raise InvalidStep(in_flow(task, not_a_flow(where, body)))


def in_flow(task: Any, message: str) -> str:
    """``message``, naming the flow of ``task`` first when there is one."""
    return message if task is None else f"flow {task.path()}: {message}"


# -- a generator object runs once ---------------------------------------------------
#
# Taking a generator object marks it, so a second use is refused even before the
# first has run it (``parallel([g, g])``, ``start(g)`` twice).  Once it runs, its
# own state says it was used; the mark only lasts as long as the generator.


class _Mark(weakref.ref):  # type: ignore[type-arg]
    """A taken generator's key in ``taken``: a weak reference that says what took it."""

    __slots__ = ("where",)
    where: str


#: Generator objects coflow has taken to run, each its own key.
taken: dict[_Mark, _Mark] = {}


def _forget(mark: _Mark) -> None:
    taken.pop(mark, None)


def take(gen: FlowGenerator, where: str, task: Any = None) -> FlowGenerator:
    """``gen`` marked as taken by ``where``; ``TypeError`` if it was taken or has run before."""
    if inspect.getgeneratorstate(gen) != inspect.GEN_CREATED:
        raise TypeError(in_flow(task, f"{where}: {used_before(gen)}"))
    mark = _Mark(gen, _forget)
    mark.where = where
    first = taken.setdefault(mark, mark)  # one dict operation: two threads cannot both win
    if first is not mark:
        raise TypeError(in_flow(task, f"{where}: {used_before(gen, first.where)}"))
    return gen


# ``has_started``: ``getgeneratorstate(gen) != GEN_CREATED`` for a generator yielded as a
# sub-flow, at a fraction of the cost (it is checked at every such yield).  It cannot be
# running then: it is suspended, or it ended.
if sys.version_info >= (3, 11):

    def has_started(gen: Any) -> bool:
        """Whether ``gen`` has started or ended (never running while its yield is dispatched)."""
        return gen.gi_suspended or gen.gi_frame is None  # type: ignore[no-any-return]

else:

    def has_started(gen: Any) -> bool:
        """Whether ``gen`` has started or ended (never running while its yield is dispatched)."""
        frame = gen.gi_frame
        return frame is None or frame.f_lasti != -1


def is_taken(gen: FlowGenerator) -> bool:
    """Whether coflow has taken ``gen`` to run (it may not have started yet)."""
    return weakref.ref(gen) in taken


def used_before(gen: FlowGenerator, taken_by: str | None = None) -> str:
    """Why ``gen`` cannot run (``taken_by``: what took it, if known), and what to pass instead."""
    if taken_by is None:
        mark = taken.get(weakref.ref(gen))  # type: ignore[call-overload]
        taken_by = None if mark is None else mark.where
    state = inspect.getgeneratorstate(gen)
    if taken_by is not None:
        why = f"was already used by {taken_by}"
    elif state == inspect.GEN_CLOSED:
        why = "has already run to its end"
    elif state == inspect.GEN_SUSPENDED:
        why = "has already started (it is running, or was stepped by hand)"
    else:
        why = "is running"
    return (
        f"the generator object {flow_name(gen)!r} {why}; a generator object runs only once: "
        "pass the generator function or a Flow to run it again"
    )
