"""The interface the scheduler needs from a backend, and backend lookup by name.

The scheduler never sleeps, spawns or reads a clock itself: it asks its
backend.  A backend gives it five things: the time (``now``), ready work in
FIFO order (``call_soon``, and ``call_soon_threadsafe`` from any thread),
timers (``call_later``), concurrent work (``start_work``), and a way for a caller
to block until a :class:`Latch` is set (``wait_latch``; async code awaits one in
its own library, see ``_awaiting``).
Every callback a backend runs for the scheduler runs on the scheduler, one at
a time.

Backends are found by name in a registry (``register_backend``): each name
gives a factory, or where to import one from (``"module:attr"``), and what to
install when that import fails.  The built-in four are registered here by
module path and imported only when asked for, so importing coflow imports no
asyncio, gevent or thread pool.  With no backend named, ``start`` picks the
one that fits the caller: the running asyncio loop's, the gevent hub's when
gevent has patched ``threading``, else the process-wide threads backend.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from random import Random
from typing import Any, NamedTuple, Protocol


class Handle(Protocol):
    """A scheduled callback or started work that can be cancelled.

    The core calls ``cancel()`` only on the scheduler, at most once it matters:
    a handle need not be thread-safe, and a cancel after the callback ran (or
    the work ended) must do nothing.
    """

    def cancel(self) -> object: ...


class Latch:
    """A one-shot flag set on the scheduler, with callbacks run when it is set."""

    __slots__ = ("_callbacks", "is_set")

    def __init__(self) -> None:
        self.is_set = False
        self._callbacks: list[Callable[[], Any]] = []

    def set(self) -> None:
        if not self.is_set:
            self.is_set = True
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def add_callback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` when set (at once if set already); call only on the scheduler."""
        if self.is_set:
            callback()
        else:
            self._callbacks.append(callback)


class Backend(ABC):
    """What a backend implements; see the module docstring and docs/architecture.md.

    ``name`` shows in messages.  ``call_soon``, ``call_later`` and
    ``start_work`` are called only on the scheduler, so what they share needs
    no lock.  What a finished runner left must not stay reachable from the
    backend (SPEC §9): a cancelled timer drops its callback and arguments, and
    an idle loop holds no callback it has run.
    """

    name: str = "abstract"
    #: On the virtual clock, the most steps a flow may take at one instant without blocking.
    max_steps: int | None = None
    #: Whether nothing runs but when a caller drives the backend (the virtual clock): a wait
    #: there is the caller's own driving, not a wait for another thread.
    driven_by_its_caller = False

    @functools.cached_property
    def random(self) -> Random:
        """What draws retry jitter: by default an unseeded ``Random`` of this backend's own.

        A backend whose runs must repeat (the virtual clock) sets its own,
        seeded, in ``__init__``.
        """
        return Random()

    @abstractmethod
    def now(self) -> float:
        """The backend's clock, in seconds; monotonic.

        Called on the scheduler (timers, supervisors' restart windows, the
        demo's timeline), never from another thread by the core.
        """

    @abstractmethod
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the scheduler after the work already ready (FIFO)."""

    @abstractmethod
    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Like ``call_soon``, from any thread; work posted from one thread keeps its order.

        Called on the scheduler's own thread, it queues in order with
        ``call_soon``.  Once the backend is closed it raises ``RuntimeError``.
        """

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the scheduler ``delay`` seconds from now.

        Timers due at the same time fire in the order they were set.
        """

    def wake_later(self, delay: float, task: Any) -> None:
        """Drive ``task`` ``delay`` seconds from now, for a ``wait``; set ``task.timer``.

        ``task.timer`` is then what ``Task.wake_soon`` cancels if the task is
        woken otherwise.  An event-loop backend files the task on its timer
        heap instead of making a timer for it.
        """
        task.timer = self.call_later(delay, task.drive, None, None)

    @abstractmethod
    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> Handle:
        """Run ``fn(*args)`` as concurrent work, then ``done(value, error)`` on the scheduler.

        ``cancel()`` asks the work to stop; ``done`` is still called exactly once
        (its value is then ignored): when the work has really finished, or soon
        (posted with ``call_soon``, never inside ``cancel()``) for work that
        cannot be interrupted (a pool thread), whose late result is discarded.
        Any ``BaseException`` that ends the work is its ``error``, and so is a
        kill or a cancellation that someone else made.  Work this backend
        cannot run (a coroutine function on the threads backend) ends with a
        ``TypeError`` naming the backend; close a coroutine it returned.
        """

    @abstractmethod
    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        """Block the caller until ``latch`` is set; ``False`` if ``timeout`` passed first.

        ``timeout`` may be longer than a thread can wait at once, or infinite
        (``wait_in_thread`` waits in pieces).  Called on the scheduler's own
        thread, where blocking would wait forever, it raises ``RuntimeError``.
        """

    def scheduler_here(self) -> str | None:
        """The scheduler the calling code runs in, if it runs as part of its caller's thread.

        Blocking there would stop the scheduler that must do what is waited
        for, so the core refuses to (a signal future's ``result()``).  The
        asyncio loop and the gevent hub say so; a backend whose own
        ``wait_latch`` refuses its scheduler thread need not.
        """
        return None

    def scheduler_in_this_thread(self) -> str | None:
        """The scheduler that shares the calling thread with whatever loop awaits here.

        An asyncio loop or a trio run awaiting a flow blocks its whole thread
        between its callbacks; where the flow's scheduler needs that thread too
        (the gevent hub), the core refuses to await there.
        """
        return None

    def close(self) -> None:  # noqa: B027 - most backends own nothing to release
        """Release what the backend owns (threads, a pool); runners on it stop being served."""


def wait_in_thread(
    backend: Backend, latch: Latch, timeout: float | None, event: Any = threading.Event
) -> bool:
    """``wait_latch`` for a caller that may block its thread until the scheduler sets ``latch``.

    A ``timeout`` longer than a thread can wait at once (``threading.TIMEOUT_MAX``)
    is waited in pieces, so any limit ``Runner.result`` takes is kept.
    """
    woken = event()
    backend.call_soon_threadsafe(latch.add_callback, woken.set)
    if timeout is None or timeout <= _LONGEST_WAIT:
        return bool(woken.wait(timeout))
    deadline = time.monotonic() + timeout
    while not woken.wait(min(deadline - time.monotonic(), _LONGEST_WAIT)):
        if time.monotonic() >= deadline:
            return False
    return True


#: The longest one wait of a thread may be: a longer timeout raises ``OverflowError``.
_LONGEST_WAIT = threading.TIMEOUT_MAX


def _detect_backend_name() -> str:
    """The backend ``start`` uses when none is named: see the module docstring."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return "asyncio"
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return "gevent"
    return "threads"


class _Registration(NamedTuple):
    #: A callable giving a backend, or ``"module:attr"``, where to import one from.
    factory: str | Callable[[], Backend]
    #: What to run to get what the import needs (``pip install ...``), for its error.
    install_hint: str | None


_registry: dict[str, _Registration] = {}


def register_backend(
    name: str, factory: str | Callable[[], Backend], *, install_hint: str | None = None
) -> None:
    """Let ``start(backend=name)`` run on the backend ``factory()`` gives.

    ``factory`` is a callable that returns a :class:`Backend` (a class, or a
    function giving a shared instance), or ``"module:attr"``, naming one that
    is imported only when the name is first asked for.  If that import fails,
    ``start`` raises an ``ImportError`` naming the backend and, if given,
    ``install_hint`` (such as ``"pip install 'coflow[gevent]'"``).  Registering
    a name again with the same factory and hint does nothing; with another one
    it is a ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_backend: name must be a non-empty str, got {name!r}")
    if isinstance(factory, str):
        module, colon, attribute = factory.partition(":")
        if not (module and colon and attribute):
            raise ValueError(
                f"register_backend: factory must be a callable or 'module:attr', got {factory!r}"
            )
    elif not callable(factory):
        raise TypeError(
            f"register_backend: factory must be a callable or 'module:attr', got {factory!r}"
        )
    if install_hint is not None and not isinstance(install_hint, str):
        raise TypeError(f"register_backend: install_hint must be a str, got {install_hint!r}")
    registration = _Registration(factory, install_hint)
    known = _registry.setdefault(name, registration)  # one step: two threads cannot both win
    if known != registration:
        hint = "" if known.install_hint is None else f" (install hint {known.install_hint!r})"
        raise ValueError(
            f"backend {name!r} is registered already, as {known.factory!r}{hint}: "
            "register another backend under a name of its own"
        )


def backend_names() -> tuple[str, ...]:
    """The names ``start(backend=...)`` takes, in the order they were registered."""
    return tuple(_registry)


register_backend("asyncio", "coflow.backends.asyncio:default_backend")
register_backend(
    "gevent", "coflow.backends.gevent:default_backend", install_hint="pip install 'coflow[gevent]'"
)
register_backend("threads", "coflow.backends.threads:default_backend")
register_backend("virtual", "coflow.backends.virtual:default_backend")


def resolve_backend(backend: Backend | str | None) -> Backend:
    """The backend instance for ``start(backend=...)``: an instance, a name, or ``None``.

    A name gives what its factory gives; for the built-in four, their
    default: the running loop's for asyncio, the current thread's hub for
    gevent, one process-wide instance for threads, a fresh clock for virtual.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        backend = _detect_backend_name()
    registration = _registry.get(backend) if isinstance(backend, str) else None
    if registration is None:
        raise ValueError(
            f"unknown backend {backend!r}; valid names are "
            + ", ".join(repr(name) for name in _registry)
        )
    made = _factory(backend, registration)()
    if not isinstance(made, Backend):
        raise TypeError(f"the factory of backend {backend!r} gave {made!r}, not a coflow Backend")
    return made


def _factory(name: str, registration: _Registration) -> Callable[[], Backend]:
    """The registered factory, imported now if it was registered by path.

    Imported again at each use (``sys.modules`` makes that a lookup), so an
    import that fails keeps failing with its hint rather than being cached.
    """
    factory = registration.factory
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as missing:
        hint = registration.install_hint
        raise ImportError(
            f"the {name!r} backend cannot be imported ({missing})"
            + (f": install it with `{hint}`" if hint else ""),
            name=module_name,
        ) from missing
    made: Callable[[], Backend] | None = getattr(module, attribute, None)
    if made is None:
        raise ImportError(
            f"the {name!r} backend is registered as {factory!r}, "
            f"but {module_name} has no {attribute!r}",
            name=module_name,
        )
    return made
