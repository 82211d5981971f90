"""Signals into a debouncing flow on the virtual backend.

A flow sits in ``debounce`` (a long window, so it never fires: no virtual time
passes during the measurement).  N ``runner.signal(fn)`` calls are made, then
one ``run_until_idle`` applies them all; each one replaces the state and
restarts the debounce.  The figure is N divided by the time of both together.
There is no peer: SPEC §8 sets an absolute target.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import coflow
from coflow import debounce
from coflow.backends.virtual import VirtualBackend

from . import Row, at_least, best_of


def increment(count: int) -> int:
    return count + 1


def _debouncing() -> Generator[Any, Any, None]:
    while True:
        yield debounce(60.0)


def run_coflow(signals: int) -> float:
    backend = VirtualBackend()
    runner = coflow.start(_debouncing, initial_state=0, backend=backend)
    backend.run_until_idle()  # the flow is now waiting in debounce

    signal = runner.signal
    last: Any = None
    started = perf_counter()
    for _ in range(signals):
        last = signal(increment)
    backend.run_until_idle()
    elapsed = perf_counter() - started

    applied = last.result(timeout=0)
    runner.stop()
    backend.run_until_idle()
    if applied != signals:
        raise RuntimeError(f"signals: the last signal gave state {applied!r}, expected {signals}")
    return elapsed


def measure(signals: int, repeats: int) -> list[Row]:
    best = best_of(repeats, {"coflow": lambda: run_coflow(signals)})
    line = f"signals into debounce: {signals:,} then run_until_idle"
    return [
        Row(line, "signals/s", signals / best["coflow"], "—", None,
            at_least(500_000, ">= 500,000/s", on="coflow")),
    ]


def profile_target(signals: int) -> Callable[[], float]:
    return lambda: run_coflow(signals)
