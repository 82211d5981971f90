"""Shared fixtures: every behaviour test takes ``backend`` and so runs on each backend.

Tests are written once, against the public API only, and read like timelines:
flows append ``(elapsed, label)`` to a :class:`Timeline`, and the test asserts
the whole list.  On the virtual clock times are exact; on real backends they
are compared with a tolerance that holds on a busy 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import coflow
from coflow.backends.virtual import VirtualBackend

BACKEND_NAMES = ["virtual"]


def make_backend(name: str) -> Any:
    if name == "virtual":
        return VirtualBackend()
    raise AssertionError(f"no test backend called {name!r}")


@pytest.fixture(params=[pytest.param(name, id=name) for name in BACKEND_NAMES])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield make_backend(request.param)


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
