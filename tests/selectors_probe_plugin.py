"""A pytest plugin that runs the conformance suite's "threads" tests on ``SelectorsBackend``.

Load it with ``-p selectors_probe_plugin`` (with ``tests/`` on ``sys.path``)::

    PYTHONPATH=tests python -m pytest -p selectors_probe_plugin -k threads -q tests

It replaces ``conftest.make_backend`` once conftest is loaded, before any
test module imports it, so the ``backend`` fixture and every test that calls
``make_backend("threads")`` get a :class:`SelectorsBackend` instead of a
``ThreadBackend``; conftest itself is not edited.  Tests that build a
``ThreadBackend`` themselves, or ask ``start`` for ``backend="threads"`` by
name, still get coflow's own: the summary at the end tells the tests that
really ran on the probe from the others.

Knobs, as environment variables:

- ``SELECTORS_PROBE_WORKERS``: the probe's pool size (default: the
  ``ThreadBackend``'s, which the suite's threads kit assumes when it fills the pool);
- ``SELECTORS_PROBE_NAME``: the probe's ``name`` (default ``"selectors"``), to see
  which tests branch on ``backend.name``;
- ``SELECTORS_PROBE_EVERYWHERE=1``: also replace ``ThreadBackend`` and the
  process-wide ``backend="threads"`` in ``coflow.backends.threads``, so the tests
  that build their own threads backend run on the probe too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from selectors_backend import SelectorsBackend

#: nodeid of every test that built a probe backend, and each test's outcome.
_probed: set[str] = set()
_outcomes: dict[str, str] = {}
_current: list[str] = []


def _workers() -> int:
    from coflow.backends.threads import DEFAULT_MAX_WORKERS

    return int(os.environ.get("SELECTORS_PROBE_WORKERS", DEFAULT_MAX_WORKERS))


def _probe_class() -> type[SelectorsBackend]:
    name = os.environ.get("SELECTORS_PROBE_NAME")
    if name is None:
        return SelectorsBackend
    return type("SelectorsBackend", (SelectorsBackend,), {"name": name})


def _made(backend: SelectorsBackend) -> SelectorsBackend:
    if _current:
        _probed.add(_current[-1])
    return backend


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("SELECTORS_PROBE_EVERYWHERE") != "1":
        return
    import atexit

    import coflow.backends.threads as threads

    probe = _probe_class()
    shared: list[SelectorsBackend] = []

    class Everywhere(probe):  # type: ignore[valid-type, misc]
        def __init__(self, max_workers: int | None = None) -> None:
            super().__init__(max_workers or threads.DEFAULT_MAX_WORKERS)
            _made(self)

    def default_backend() -> SelectorsBackend:
        if not shared:
            shared.append(Everywhere())
            atexit.register(shared[0].close)
        return _made(shared[0])

    threads.ThreadBackend = Everywhere  # type: ignore[misc]
    threads.default_backend = default_backend


def _patch(conftest: Any) -> None:
    original = conftest.make_backend

    @contextlib.contextmanager
    def make_backend(name: str) -> Iterator[Any]:
        if name != "threads":
            with original(name) as made:
                yield made
            return
        backend = _made(_probe_class()(max_workers=_workers()))
        try:
            yield backend
        finally:
            backend.close()

    make_backend.__doc__ = original.__doc__
    conftest.make_backend = make_backend


def pytest_plugin_registered(plugin: Any, manager: pytest.PytestPluginManager) -> None:
    if getattr(plugin, "__name__", None) == "conftest" and hasattr(plugin, "make_backend"):
        if not getattr(plugin.make_backend, "_selectors_probe", False):
            _patch(plugin)
            plugin.make_backend._selectors_probe = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _current.append(item.nodeid)
    try:
        yield
    finally:
        _current.pop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.when == "call" or report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped" if report.skipped else "passed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    write("")
    write(f"selectors probe (pool of {_workers()}):")
    for label, nodeids in (
        ("ran on SelectorsBackend", sorted(_probed)),
        ("did not (built their own backend)", sorted(set(_outcomes) - _probed)),
    ):
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for nodeid in nodeids:
            counts[_outcomes.get(nodeid, "failed")] += 1
        write(f"  {len(nodeids)} {label}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        for nodeid in nodeids:
            if _outcomes.get(nodeid) == "failed" or not label.startswith("ran"):
                write(f"    {_outcomes.get(nodeid, 'failed').upper()} {nodeid}")
