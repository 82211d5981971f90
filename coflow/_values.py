"""``value``: the decorator for coflow's small immutable value types.

A frozen, slotted dataclass, with the attribute guard replaced: the one
dataclasses generates for frozen slotted classes raises ``TypeError`` instead
of ``AttributeError`` for names that are not fields (before Python 3.12).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, overload

from typing_extensions import dataclass_transform

T = TypeVar("T", bound=type)


def _immutable(self: object, name: str, value: Any = None) -> NoReturn:
    raise dataclasses.FrozenInstanceError(
        f"{type(self).__name__} is immutable: cannot set {name!r}"
    )


@overload
def value(cls: T, /) -> T: ...
@overload
def value(*, repr: bool = True) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True)
def value(cls: T | None = None, /, *, repr: bool = True) -> T | Callable[[T], T]:
    """Make ``cls`` a frozen, slotted dataclass whose instances refuse any attribute change."""

    def make(cls: T) -> T:
        made: Any = dataclasses.dataclass(frozen=True, slots=True, repr=repr)(cls)
        made.__setattr__ = _immutable
        made.__delattr__ = _immutable
        return made  # type: ignore[no-any-return]

    return make if cls is None else make(cls)
