"""Which supervisor a ``start`` gets: the named one, the innermost ``with`` block's, else the
installed one.

Apart from ``Supervisor`` itself, so that the runner module, which asks, does
not import the supervisor module, which starts runners (``start(key=)``).
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

from ._missing import MISSING

if TYPE_CHECKING:
    from ._backend import Backend
    from ._instrument import InstrumentSet
    from ._runner import Runner


class Supervising:
    """What ``start`` asks of a supervisor; ``Supervisor`` is the one kind there is."""

    backend: Backend | str | None
    #: The instruments of the runners it supervises and their children.
    instrument_set: InstrumentSet

    def check_open(self) -> None:
        """Raise if it starts no more flows."""
        raise NotImplementedError

    def adopt(self, runner: Runner) -> None:
        """Supervise ``runner``, before it first runs."""
        raise NotImplementedError


#: The supervisors of the enclosing ``with`` blocks, innermost last.
_AMBIENT: contextvars.ContextVar[tuple[Supervising, ...]] = contextvars.ContextVar(
    "coflow_supervisors", default=()
)
_installed: Supervising | None = None
_INSTALLING = threading.Lock()


def enter(supervisor: Supervising) -> None:
    """``with supervisor:`` begins: it is the ambient one in this context."""
    _AMBIENT.set((*_AMBIENT.get(), supervisor))


def leave(supervisor: Supervising) -> None:
    """``with supervisor:`` ends; blocks must end in the order they began."""
    ambient = _AMBIENT.get()
    if not ambient or ambient[-1] is not supervisor:
        raise RuntimeError("Supervisor blocks must be left in the order they were entered")
    _AMBIENT.set(ambient[:-1])


def install(supervisor: Supervising) -> None:
    """The supervisor of every ``start`` that finds no other, in every thread."""
    global _installed
    with _INSTALLING:
        if _installed is not None and _installed is not supervisor:
            raise RuntimeError(
                f"another supervisor is installed ({_installed!r}); uninstall it first"
            )
        _installed = supervisor


def uninstall(supervisor: Supervising) -> None:
    global _installed
    with _INSTALLING:
        if _installed is supervisor:
            _installed = None


def find_supervisor(given: object) -> Supervising | None:
    """The supervisor for a ``start`` given ``supervisor=given``: see the module docstring."""
    if given is MISSING:
        ambient = _AMBIENT.get()
        found = ambient[-1] if ambient else _installed
    elif given is None or isinstance(given, Supervising):
        found = given
    else:
        raise TypeError(f"coflow.start: supervisor must be a Supervisor or None, got {given!r}")
    if found is not None:
        found.check_open()
    return found
