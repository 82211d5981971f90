"""``Step``, the base of every step, and how steps and their arguments read in messages.

Apart from the steps themselves (``_steps``) so that what a flow is
(``_flow``) can be told from a step without importing the step constructors.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Generator
from typing import Any, Generic, TypeVar

R_co = TypeVar("R_co", covariant=True)


def describe(value: Any) -> str:
    """A short, readable rendering of a step argument (functions by name)."""
    if value.__class__ in _ATOMS:
        return repr(value)  # the commonest argument, a number: no need to ask what else it is
    if (
        inspect.isfunction(value)
        or inspect.ismethod(value)
        or inspect.isbuiltin(value)
        or isinstance(value, type)
    ):
        return str(value.__qualname__)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        inner = ", ".join(describe(item) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


class Step(Generic[R_co]):
    """Base of every step; ``R_co`` is what ``yield step`` evaluates to."""

    __slots__ = ()

    def __iter__(self) -> Generator[Step[R_co], Any, R_co]:
        result: R_co = yield self
        return result

    def __repr__(self) -> str:
        plan = _repr_plans.get(self.__class__)
        if plan is None:
            if not dataclasses.is_dataclass(self):
                return object.__repr__(self)  # a user's subclass of Step: it has no fields to show
            plan = _repr_plans[self.__class__] = _repr_plan(self.__class__)
        name, fields = plan
        depth = getattr(_repr_nesting, "depth", 0)
        if depth >= _REPR_DEPTH:
            return f"{name}(...)"  # a tree 10,000 steps deep has a short repr, not a RecursionError
        _repr_nesting.depth = depth + 1
        try:
            shown = []
            for field_name, default in fields:
                value = getattr(self, field_name)
                if default is not dataclasses.MISSING and value == default:
                    continue
                shown.append(f"{field_name}={describe(value)}")
        finally:
            _repr_nesting.depth = depth
        return f"{name}({', '.join(shown)})"


#: Steps nested deeper than this show as ``name(...)`` in a step's repr.
_REPR_DEPTH = 6
_repr_nesting = threading.local()


#: Per step class: its constructor's name, and each field's name and default (``_repr_plan``).
_repr_plans: dict[type, tuple[str, tuple[tuple[str, Any], ...]]] = {}
#: Values whose ``repr`` is already short and readable.
_ATOMS = frozenset({int, float, bool, type(None)})


def _repr_plan(cls: type) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """What a repr of ``cls`` shows, read once: ``inspect()`` shows thousands of steps."""
    fields = tuple((field.name, field.default) for field in dataclasses.fields(cls))
    return _constructor_name(cls), fields


def _constructor_name(cls: type) -> str:
    name = cls.__name__
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
