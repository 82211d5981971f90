"""coflow's pytest plugin: fixtures to test flows on the virtual clock and on every backend.

pytest loads it wherever coflow is installed (a ``pytest11`` entry point
named ``coflow``; ``-p no:coflow`` turns it off).  docs/testing.md shows
each fixture in use.

- ``virtual_backend``: a fresh ``VirtualBackend`` (seed 0, or the
  ``coflow_seed`` marker's, or ``--coflow-seed``'s).  At teardown it runs
  what is ready, then fails the test if runners it started are still
  running, unless the test is marked ``coflow_leave_running``.
- ``coflow_backend``: a ready backend; a test that takes it runs once per
  backend, ids ``virtual``, ``asyncio``, ``gevent`` and ``threads`` (gevent
  skipped where it is not installed).  ``--coflow-backends=virtual,threads``
  and the marker ``coflow_backends("virtual", "asyncio")`` choose them; with
  both, a test runs on the backends both name.  Each is closed at teardown.
- ``timeline``, ``after`` and ``tolerance``, on the test's backend: its
  ``coflow_backend`` if it takes one, else its ``virtual_backend``.

A backend written outside coflow joins the four when ``COFLOW_TEST_BACKEND``
names its factory as ``module:attr``; its tests are marked
``external_backend`` (docs/architecture.md, "Writing a backend").

coflow itself is imported only when a fixture is set up, never when pytest
loads the plugin, so a coverage run that starts after the plugins load still
sees all of coflow's import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from coflow import Backend, Runner
    from coflow.testing import After, Timeline

__all__ = [
    "BUILT_IN_BACKENDS",
    "REAL_TOLERANCE",
    "ExternalBackend",
    "external_backend",
    "backend_names",
    "backend_param",
    "open_backend",
]

#: The backends ``coflow_backend`` runs a test on by default, in this order (the ids).
BUILT_IN_BACKENDS = ("virtual", "asyncio", "gevent", "threads")
#: Seconds a time observed on a real backend may be off from the one expected, in
#: ``tolerance`` and ``timeline``: what timers, threads and a busy 2-core CI machine add.
REAL_TOLERANCE = 0.12
#: Names a backend's factory, ``module:attr``, to run the tests on it too.
EXTERNAL_VARIABLE = "COFLOW_TEST_BACKEND"
#: Each built-in backend's class, found by name as coflow finds its adapters: nothing is
#: imported until a test asks for it (the gevent adapter imports gevent).
_ADAPTERS = {
    "virtual": "coflow.backends.virtual:VirtualBackend",
    "asyncio": "coflow.backends.asyncio:AsyncioBackend",
    "gevent": "coflow.backends.gevent:GeventBackend",
    "threads": "coflow.backends.threads:ThreadBackend",
}

_GEVENT_MISSING = "gevent is not installed: pip install 'coflow[gevent]'"
_call_report = pytest.StashKey[pytest.TestReport]()
_chosen = pytest.StashKey[list[str]]()


# --- options and markers ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coflow", "coflow's fixtures")
    group.addoption(
        "--coflow-backends",
        metavar="NAMES",
        help="the backends, comma-separated, that tests taking coflow_backend run on "
        f"(default: all of {','.join(BUILT_IN_BACKENDS)})",
    )
    group.addoption(
        "--coflow-seed",
        type=int,
        metavar="SEED",
        help="the seed of the VirtualBackend that virtual_backend and coflow_backend give "
        "(default 0; a coflow_seed marker wins)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "coflow_backends(*names): the backends a test taking coflow_backend runs on",
        "coflow_seed(seed): the seed of the test's VirtualBackend",
        "coflow_leave_running: runners left running on virtual_backend do not fail the test",
        f"external_backend: runs on the backend {EXTERNAL_VARIABLE} names; "
        "select with -m external_backend",
    ):
        config.addinivalue_line("markers", line)
    option = config.getoption("coflow_backends")
    if option is not None:
        names = [name.strip() for name in option.split(",") if name.strip()]
        try:
            _check_names(names)
        except ValueError as error:
            raise pytest.UsageError(f"--coflow-backends={option}: {error}") from None
        config.stash[_chosen] = list(dict.fromkeys(names))


@pytest.hookimpl(tryfirst=True)  # first, so the backend's id comes first, as a fixture's would
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that takes ``coflow_backend``, directly or through a fixture.

    A test that parametrizes ``coflow_backend`` itself (``indirect=True``) is left alone.
    """
    if "coflow_backend" not in metafunc.fixturenames or any(
        "coflow_backend" in _argnames(marker) for marker in metafunc.definition.iter_markers()
    ):
        return
    chosen = metafunc.config.stash.get(_chosen, None)
    names = backend_names() if chosen is None else chosen
    marker = metafunc.definition.get_closest_marker("coflow_backends")
    if marker is not None:
        try:
            _check_names(list(marker.args))
        except ValueError as error:
            pytest.fail(f"{metafunc.definition.nodeid}: coflow_backends: {error}", pytrace=False)
        names = [name for name in marker.args if name in names]
        if not names:
            option = metafunc.config.getoption("coflow_backends")
            reason = f"--coflow-backends={option} names none of coflow_backends{marker.args!r}"
            skipped = pytest.param("none", id="none", marks=pytest.mark.skip(reason=reason))
            metafunc.parametrize("coflow_backend", [skipped], indirect=True)
            return
    metafunc.parametrize("coflow_backend", [backend_param(name) for name in names], indirect=True)


def _argnames(marker: pytest.Mark) -> list[str]:
    if marker.name != "parametrize" or not marker.args:
        return []
    names = marker.args[0]
    return [name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    # So that virtual_backend's teardown knows whether the test itself passed.
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call":
        item.stash[_call_report] = report


# --- the backends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalBackend:
    """The backend ``COFLOW_TEST_BACKEND`` names, ``module:attr`` of its factory."""

    name: str
    factory: Callable[[], Any]
    #: Whether it runs in real time rather than when its caller drives it (a virtual clock).
    real_time: bool


def external_backend() -> ExternalBackend | None:
    """The backend ``COFLOW_TEST_BACKEND`` names, registered under its ``name``; None if unset.

    Its factory is called once, to learn its name and whether it runs in real
    time; the name must not be one of the four.
    """
    return _external(os.environ.get(EXTERNAL_VARIABLE, ""))


@functools.cache
def _external(target: str) -> ExternalBackend | None:
    if not target:
        return None
    from coflow._backend import register_backend

    module, _, attribute = target.partition(":")
    factory = getattr(importlib.import_module(module), attribute)
    sample = factory()
    external = ExternalBackend(sample.name, factory, not sample.driven_by_its_caller)
    _close(sample)
    if external.name in BUILT_IN_BACKENDS:
        raise ValueError(f"{EXTERNAL_VARIABLE}={target}: {external.name!r} is taken")
    register_backend(external.name, target)
    return external


def backend_names() -> list[str]:
    """The backends a test taking ``coflow_backend`` runs on when nothing chooses: all."""
    external = external_backend()
    return [*BUILT_IN_BACKENDS, *([] if external is None else [external.name])]


def _check_names(names: list[str]) -> None:
    unknown = [name for name in names if name not in backend_names()]
    if unknown or not names:
        valid = ", ".join(backend_names())
        raise ValueError(f"no backend called {', '.join(unknown) or '(none)'}; valid: {valid}")


def backend_param(name: str) -> Any:
    """``pytest.param(name)`` with the backend's id, skipped where its library is missing."""
    marks: list[pytest.MarkDecorator] = []
    if name == "gevent" and importlib.util.find_spec("gevent") is None:
        marks.append(pytest.mark.skip(reason=_GEVENT_MISSING))
    if name not in BUILT_IN_BACKENDS:
        marks.append(pytest.mark.external_backend)
    return pytest.param(name, id=name, marks=marks)


@contextlib.contextmanager
def open_backend(name: str, seed: int = 0) -> Iterator[Backend]:
    """A fresh, ready backend of that name, for a test that blocks on its flows; closed after.

    The asyncio backend's loop runs in a thread of its own, so a test can
    call ``result()`` while its flows run there.
    """
    if name == "asyncio":
        with _loop_in_thread() as loop:
            yield _adapter("asyncio")(loop)
        return
    backend: Backend
    if name == "virtual":
        backend = _adapter("virtual")(seed=seed)
    elif name in _ADAPTERS:
        backend = _adapter(name)()
    else:
        external = external_backend()
        if external is None or name != external.name:
            raise ValueError(f"no backend called {name!r}; valid: {', '.join(backend_names())}")
        backend = external.factory()
    try:
        yield backend
    finally:
        _close(backend)


def _adapter(name: str) -> Any:
    module, _, attribute = _ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


@contextlib.contextmanager
def _loop_in_thread() -> Iterator[Any]:
    import asyncio

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="coflow-test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def _close(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _seed(request: pytest.FixtureRequest) -> int:
    marker = request.node.get_closest_marker("coflow_seed")
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], int):
            pytest.fail(f"coflow_seed takes one int, the seed; got {marker.args!r}", pytrace=False)
        seed: int = marker.args[0]
        return seed
    option: int | None = request.config.getoption("coflow_seed")
    return 0 if option is None else option


# --- the fixtures -------------------------------------------------------------------------------


@pytest.fixture
def coflow_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A ready backend: the test runs once per backend (``--coflow-backends``, the marker)."""
    name = getattr(request, "param", None)
    if name is None:
        pytest.fail(
            "coflow_backend must be an argument of the test or of a fixture it takes, "
            "so that the test can be run once per backend (it cannot be got by getfixturevalue)",
            pytrace=False,
        )
    with open_backend(name, _seed(request)) as backend:
        yield backend


@pytest.fixture
def virtual_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh virtual clock; a test that leaves runners running on it fails at teardown."""
    from coflow._instrument import started_hooks

    backend = _adapter("virtual")(seed=_seed(request))
    started: list[weakref.ref[Runner]] = []

    def track(runner: Runner) -> None:
        if runner.backend is backend:
            started.append(weakref.ref(runner))

    started_hooks.append(track)
    try:
        yield backend
        report = request.node.stash.get(_call_report, None)
        if report is not None and report.passed:
            if request.node.get_closest_marker("coflow_leave_running") is None:
                backend.run_until_idle()  # so that a stop() at the test's end takes effect
                _fail_if_running([runner for ref in started if (runner := ref()) is not None])
    finally:
        started_hooks.remove(track)
        _close(backend)


def _fail_if_running(runners: list[Runner]) -> None:
    from coflow._flow import flow_name

    running = [runner for runner in runners if runner.status == "running"]
    if not running:
        return
    lines = []
    for runner in running:
        line = f"  {runner!r}: flow {flow_name(runner.flow)}"
        if runner.parent is not None:
            line += f", a child of {' > '.join(runner.parent.lineage())}"
        lines.append(line)
    count = f"{len(running)} runner{'s' if len(running) > 1 else ''}"
    pytest.fail(
        f"the test left {count} running on its virtual_backend:\n"
        + "\n".join(lines)
        + "\nStop each one (runner.stop(): what is ready runs at teardown, so a stop at the "
        "test's end is enough) or let it finish (virtual_backend.run()); or, if the test means "
        "to leave them running, mark it @pytest.mark.coflow_leave_running.",
        pytrace=False,
    )


def _test_backend(request: pytest.FixtureRequest) -> Backend:
    """The test's ``coflow_backend`` if it takes one, else its ``virtual_backend``."""
    if "coflow_backend" in request.fixturenames:
        backend: Backend = request.getfixturevalue("coflow_backend")
    else:
        backend = request.getfixturevalue("virtual_backend")
    return backend


@pytest.fixture
def tolerance(request: pytest.FixtureRequest) -> float:
    """Seconds a time observed on the test's backend may be off: 0 on a virtual clock.

    ``REAL_TOLERANCE`` (0.12) on a real backend; a conftest may define its own
    ``tolerance`` fixture, which ``timeline`` then uses.
    """
    return 0.0 if _test_backend(request).driven_by_its_caller else REAL_TOLERANCE


@pytest.fixture
def timeline(request: pytest.FixtureRequest, tolerance: float) -> Timeline:
    """A ``coflow.testing.Timeline`` on the test's backend, matching within ``tolerance``."""
    from coflow.testing import Timeline

    return Timeline(_test_backend(request), tolerance)


@pytest.fixture
def after(request: pytest.FixtureRequest) -> After:
    """``after(seconds, fn)``: ``fn()`` that many seconds from now, on the test's backend."""
    from coflow.testing import After

    return After(_test_backend(request))
