"""``Flow``: a named body (generator function or step tree) with its initial state.

Also the one place that turns anything accepted as a flow (a ``Flow``, a
generator function, a generator object or a step) into a fresh generator
for the scheduler to drive.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from types import FunctionType
from typing import Any, overload

from ._missing import MISSING
from ._steps import Step

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
        if isinstance(body, Step):
            default_name = type(body).__name__.lower()
        elif inspect.isgeneratorfunction(body):
            default_name = body.__name__
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
    if inspect.isgenerator(body):
        return str(body.__name__)
    if isinstance(body, Step):
        return repr(body)
    return str(getattr(body, "__name__", repr(body)))


def is_flow_like(value: Any) -> bool:
    code = getattr(value, "__code__", None)
    if code is not None:  # a function or method, the commonest task: one flag says it all
        return bool(code.co_flags & inspect.CO_GENERATOR)
    return (
        isinstance(value, (Flow, Step))
        or inspect.isgenerator(value)
        or inspect.isgeneratorfunction(value)
    )


def instantiate(body: Any, where: str) -> FlowGenerator:
    """A fresh generator for a flow-like, or ``TypeError`` naming ``where``."""
    code = getattr(body, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_GENERATOR:
        return body()  # type: ignore[no-any-return]  # a generator function: the commonest
    if inspect.isgenerator(body):
        return body
    if isinstance(body, Flow):
        return body()
    if isinstance(body, Step):
        return step_body(body)
    if inspect.isgeneratorfunction(body):
        return body()  # type: ignore[no-any-return]
    raise TypeError(
        f"{where}: expected a flow (a Flow, a generator function, a generator or a step), "
        f"got {body!r}"
    )
