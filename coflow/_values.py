"""``value``: the decorator for coflow's small immutable value types.

A frozen, slotted dataclass, with the attribute guard replaced: the one
dataclasses generates for frozen slotted classes raises ``TypeError`` instead
of ``AttributeError`` for names that are not fields (before Python 3.12).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from typing_extensions import dataclass_transform

T = TypeVar("T", bound=type)


def _immutable(self: object, name: str, value: Any = None) -> NoReturn:
    raise dataclasses.FrozenInstanceError(f"{type(self).__name__} is immutable: cannot set {name!r}")


@dataclass_transform(frozen_default=True)
def value(cls: T | None = None, *, repr: bool = True) -> Any:
    def make(cls: T) -> T:
        made: Any = dataclasses.dataclass(frozen=True, slots=True, repr=repr)(cls)
        made.__setattr__ = _immutable
        made.__delattr__ = _immutable
        return made  # type: ignore[no-any-return]

    return make if cls is None else make(cls)


def fast_builder(cls: type) -> Callable[..., Any]:
    """A constructor for a ``value`` class that skips the dataclass ``__init__``.

    It sets the slots through their descriptors, which is about a third
    cheaper; the hottest steps (``set_state``, ``wait``) are built with it.
    The arguments are taken as given: the caller validates them.
    """
    names = [field.name for field in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
    arguments = ", ".join(names)
    sets = "".join(f"    _set_{name}(step, {name})\n" for name in names)
    exec(f"def build({arguments}):\n    step = _new(_cls)\n{sets}    return step\n", namespace)
    return namespace["build"]  # type: ignore[no-any-return]
