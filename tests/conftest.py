"""What this repository's suite adds to coflow's pytest plugin (coflow/pytest_plugin.py).

The plugin gives the fixtures: ``coflow_backend`` runs a test once per
backend, ``virtual_backend`` gives a virtual clock, and ``timeline``,
``after`` and ``tolerance`` work on the test's backend, so tests are written
once, against the public API only, and read like timelines.  This file adds
what only this suite needs: the hang guard, the lists of backends by kind
that some tests are parametrized over, ``Gate`` and ``run_async``.

A backend written outside coflow runs the same suite: name its factory as
``module:attr`` in ``COFLOW_TEST_BACKEND`` (``tests/`` is on ``sys.path``), and the
plugin adds it to every test that takes ``coflow_backend``, marked
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
import faulthandler
import gc
import importlib.util
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import coflow
from coflow.backends.virtual import VirtualBackend
from coflow.pytest_plugin import BUILT_IN_BACKENDS, backend_param, external_backend

T = TypeVar("T")
HAS_GEVENT = importlib.util.find_spec("gevent") is not None
needs_gevent = pytest.mark.skipif(not HAS_GEVENT, reason="gevent is not installed")
EXTERNAL = external_backend()
#: The backend from outside coflow that the suite runs on as well, if one is named.
EXTERNAL_BACKENDS = [] if EXTERNAL is None else [EXTERNAL.name]
BACKEND_NAMES = [*BUILT_IN_BACKENDS, *EXTERNAL_BACKENDS]
#: The backends that run in real time, whatever their caller does.
REAL_BACKENDS = ["asyncio", "gevent", "threads"]
#: For a pytest run inside this one (pytester): no assertion rewriting.  The modules this suite
#: imported already (bench, examples) could not be rewritten there, and a source checkout's
#: coflow.egg-info on sys.path (left by an editable install) names them as a plugin's: a
#: warning; and CPython 3.11's parser can fail a rewrite in a process that has met a
#: RecursionError before ("AST constructor recursion depth mismatch").  Plain asserts say
#: enough for the inner tests, whose outcomes the outer ones check.
INNER_RUN_OPTIONS = ("-p", "no:cacheprovider", "--assert=plain")
if EXTERNAL is not None and EXTERNAL.real_time:
    REAL_BACKENDS.append(EXTERNAL.name)
#: Seconds one test may take before the run is ended with every thread's traceback: a hang
#: then fails the suite at once, naming where it hangs, instead of running out CI's clock.
HANG_LIMIT = float(os.environ.get("COFLOW_TEST_HANG_LIMIT", "120"))


#: Run the suite with a no-op instrument installed process-wide, so that every runner it
#: starts runs the reporting step loop (coflow/_reporting.py): the same behaviour, tested
#: by the same tests as the plain loop.
INSTRUMENTED = os.environ.get("COFLOW_TEST_INSTRUMENTED") == "1"
_real_stderr: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("coflow"):
        raise pytest.UsageError(
            "coflow's pytest plugin is not loaded: install coflow (pip install -e .), "
            "and do not pass -p no:coflow"
        )
    # Output capture is off while pytest configures: this copy of fd 2 is the terminal's.
    _real_stderr.append(os.dup(2))
    if INSTRUMENTED:
        coflow.add_instrument(coflow.Instrument())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if INSTRUMENTED:
        skip = pytest.mark.skip(reason="checks the plain step loop; every runner is instrumented")
        for item in items:
            if item.get_closest_marker("plain_step_loop") is not None:
                item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the collector's full passes short: what collection imported is moved out of its reach.

    By now the test modules and everything they import (pytest, hypothesis, the web
    frameworks) are a few hundred thousand objects that live until the end.  Each full
    collection would walk them all, a pause of 100-200 ms on a busy 2-core machine at
    random moments of the run, longer than a real-time test's tolerance; frozen, they are
    skipped, as a pre-forking server freezes what it imported before it forks.
    """
    if importlib.util.find_spec("hypothesis") is not None:
        # hypothesis' plugin imports it at the end of the run; importing it later would have
        # register_random (called by trio's hook) miss its referrers among frozen objects
        import hypothesis  # noqa: F401
    gc.collect()
    gc.freeze()


#: Tests between two freezes of what the run has made since (modules imported by a test).
FREEZE_EVERY = 300
_tests_run = [0]


def pytest_runtest_teardown(item: pytest.Item) -> None:
    _tests_run[0] += 1
    if _tests_run[0] % FREEZE_EVERY == 0:
        gc.collect()
        gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_LIMIT, exit=True, file=_real_stderr[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def backend_params(names: list[str] = BACKEND_NAMES) -> list[Any]:
    """``pytest.param`` per backend name, for a test that takes the name, not a backend."""
    return [backend_param(name) for name in names]


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
def is_virtual(coflow_backend: Any) -> bool:
    return isinstance(coflow_backend, VirtualBackend)


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
