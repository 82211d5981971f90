"""Shared fixtures: every behaviour test takes ``backend`` and so runs on each backend.

Tests are written once, against the public API only, and read like timelines:
flows append ``(elapsed, label)`` to a :class:`Timeline`, and the test asserts
the whole list.  On the virtual clock times are exact; on real backends they
are compared with a tolerance that holds on a busy 2-core machine.

A backend written outside coflow runs the same suite: name its factory as
``module:attr`` in ``COFLOW_TEST_BACKEND`` (``tests/`` is on ``sys.path``), and it
joins the four in every test that runs on each backend, marked
``external_backend``::

    COFLOW_TEST_BACKEND=selectors_backend:SelectorsBackend python -m pytest -m external_backend

It is registered under its ``name``, so ``start(backend=name)`` finds it too.
Unless it is driven by its caller (a virtual clock), it also joins the tests
of the real backends, which expect of it what the threads backend does: that
``run`` work runs on threads that a stop leaves to finish, on a pool of
``max_workers`` if it has that attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import importlib.util
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

import coflow
import coflow.backends
from coflow.backends.virtual import VirtualBackend

T = TypeVar("T")
HAS_GEVENT = importlib.util.find_spec("gevent") is not None
needs_gevent = pytest.mark.skipif(not HAS_GEVENT, reason="gevent is not installed")
#: Marks the tests that run on ``COFLOW_TEST_BACKEND``'s backend: ``-m external_backend``.
external_backend = pytest.mark.external_backend
BUILT_IN_BACKENDS = ["virtual", "asyncio", "gevent", "threads"]


@dataclass(frozen=True)
class ExternalBackend:
    """The backend ``COFLOW_TEST_BACKEND`` names, ``module:attr`` of its factory."""

    name: str
    factory: Callable[[], Any]
    real_time: bool  # not driven by its caller, as a virtual clock is

    @classmethod
    def named(cls, target: str) -> ExternalBackend | None:
        if not target:
            return None
        module, _, attribute = target.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
        sample = factory()
        external = cls(sample.name, factory, not sample.driven_by_its_caller)
        sample.close()
        if external.name in BUILT_IN_BACKENDS:
            raise ValueError(f"COFLOW_TEST_BACKEND={target}: {external.name!r} is taken")
        coflow.backends.register_backend(external.name, target)
        return external


EXTERNAL = ExternalBackend.named(os.environ.get("COFLOW_TEST_BACKEND", ""))
#: The backend from outside coflow that the suite runs on as well, if one is named.
EXTERNAL_BACKENDS = [] if EXTERNAL is None else [EXTERNAL.name]
BACKEND_NAMES = [*BUILT_IN_BACKENDS, *EXTERNAL_BACKENDS]
#: The backends that run in real time, whatever their caller does.
REAL_BACKENDS = ["asyncio", "gevent", "threads"]
if EXTERNAL is not None and EXTERNAL.real_time:
    REAL_BACKENDS.append(EXTERNAL.name)
#: Seconds one test may take before the run is ended with every thread's traceback: a hang
#: then fails the suite at once, naming where it hangs, instead of running out CI's clock.
HANG_LIMIT = float(os.environ.get("COFLOW_TEST_HANG_LIMIT", "120"))


_real_stderr: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    # Output capture is off while pytest configures: this copy of fd 2 is the terminal's.
    _real_stderr.append(os.dup(2))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_LIMIT, exit=True, file=_real_stderr[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop running in its own thread, so a sync test can block on its flows."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@contextlib.contextmanager
def make_backend(name: str) -> Iterator[Any]:
    """A fresh backend of that name, for a sync test; torn down afterwards."""
    if name == "virtual":
        yield VirtualBackend()
    elif name == "asyncio":
        from coflow.backends.asyncio import AsyncioBackend

        with loop_in_thread() as loop:
            yield AsyncioBackend(loop)
    elif name == "gevent":
        from coflow.backends.gevent import GeventBackend

        backend = GeventBackend()
        yield backend
        backend.close()
    elif name == "threads":
        from coflow.backends.threads import ThreadBackend

        backend = ThreadBackend()
        yield backend
        backend.close()
    elif EXTERNAL is not None and name == EXTERNAL.name:
        backend = EXTERNAL.factory()
        yield backend
        backend.close()
    else:
        raise AssertionError(f"no test backend called {name!r}")


def backend_params(names: list[str] = BACKEND_NAMES) -> list[Any]:
    """``pytest.param`` per backend name, skipped where the backend's library is missing."""
    marks = {"gevent": [needs_gevent], **{name: [external_backend] for name in EXTERNAL_BACKENDS}}
    return [pytest.param(name, id=name, marks=marks.get(name, [])) for name in names]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    with make_backend(request.param) as made:
        yield made


def run_async(backend: Any, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())``, from a thread where it cannot starve the backend.

    An asyncio loop and a gevent hub cannot share a thread: each needs it to
    run.  On gevent the loop runs in a native thread of the hub's pool while
    this greenlet waits, which is how gevent code awaits a flow from asyncio.
    """
    if backend.name == "gevent":
        from gevent import get_hub

        return get_hub().threadpool.spawn(asyncio.run, main()).get()  # type: ignore[no-any-return]
    return asyncio.run(main())


@pytest.fixture
def is_virtual(backend: Any) -> bool:
    return isinstance(backend, VirtualBackend)


@pytest.fixture
def tolerance(is_virtual: bool) -> float:
    """Absolute tolerance, in seconds, for times observed on this backend."""
    return 0.0 if is_virtual else 0.12


class Timeline:
    """A log of ``(seconds since creation, label)`` pairs taken on a backend's clock."""

    def __init__(self, backend: Any, tolerance: float) -> None:
        self.backend = backend
        self.tolerance = tolerance
        self.origin = backend.now()
        self.entries: list[tuple[float, Any]] = []

    def log(self, label: Any) -> None:
        self.entries.append((self.backend.now() - self.origin, label))

    def labels(self) -> list[Any]:
        return [label for _, label in self.entries]

    def assert_matches(self, expected: list[tuple[float, Any]]) -> None:
        assert self.labels() == [label for _, label in expected], self.entries
        for (seen, _), (wanted, label) in zip(self.entries, expected):
            assert seen == pytest.approx(wanted, abs=self.tolerance or 1e-9), (label, self.entries)


@pytest.fixture
def timeline(backend: Any, tolerance: float) -> Timeline:
    return Timeline(backend, tolerance)


@pytest.fixture
def after(backend: Any) -> Callable[[float, Callable[[], Any]], coflow.Runner]:
    """``after(seconds, fn)`` calls ``fn()`` that many seconds from now, on the backend's clock.

    It is a tiny flow, so it works the same on every backend: use it to signal,
    send or stop at a precise moment of a test's timeline.
    """

    def schedule(seconds: float, fn: Callable[[], Any]) -> coflow.Runner:
        def driver() -> Iterator[Any]:
            yield coflow.wait(seconds)
            fn()

        return coflow.start(driver, backend=backend, name=f"after({seconds})")

    return schedule


class Gate:
    """Opened once from anywhere (a flow, a notify callback); ``wait()`` blocks until then.

    It is an unsupervised flow on the test's backend, so waiting on it drives
    the virtual clock and yields to the gevent hub like any ``result()``.
    """

    def __init__(self, backend: Any) -> None:
        self.runner = coflow.start(
            coflow.wait_until(lambda s: s), initial_state=False, backend=backend, supervisor=None
        )

    def open(self) -> None:
        self.runner.signal(lambda s: True)

    def wait(self) -> None:
        assert self.runner.result(timeout=5) is True
