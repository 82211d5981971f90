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
        if not dataclasses.is_dataclass(self):
            return object.__repr__(self)  # a user's subclass of Step: it has no fields to show
        name = _constructor_name(type(self))
        depth = getattr(_repr_nesting, "depth", 0)
        if depth >= _REPR_DEPTH:
            return f"{name}(...)"  # a tree 10,000 steps deep has a short repr, not a RecursionError
        _repr_nesting.depth = depth + 1
        try:
            shown = []
            for field in dataclasses.fields(self):
                value = getattr(self, field.name)
                if field.default is not dataclasses.MISSING and value == field.default:
                    continue
                shown.append(f"{field.name}={describe(value)}")
        finally:
            _repr_nesting.depth = depth
        return f"{name}({', '.join(shown)})"


#: Steps nested deeper than this show as ``name(...)`` in a step's repr.
_REPR_DEPTH = 6
_repr_nesting = threading.local()


def _constructor_name(cls: type) -> str:
    name = cls.__name__
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
