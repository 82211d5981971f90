"""Instruments and the inspector: what a no-op ``Instrument`` costs the step loop, and how
long ``coflow.inspect()`` takes on many runners.

- the sync-steps flow (``bench.sync_steps``) with no instrument installed, against the
  same flow with a no-op ``coflow.Instrument`` installed process-wide: the ratio is what
  reporting every step costs (a runner nobody instruments runs the plain loop);
- a snapshot of N runners blocked in ``wait`` on the virtual clock, in ms.
"""

from __future__ import annotations

from time import perf_counter

import coflow
from coflow.backends.virtual import VirtualBackend

from . import Row, at_most, best_of
from .sync_steps import run_coflow


def run_instrumented(steps: int) -> float:
    """``run_coflow`` with a no-op instrument installed process-wide."""
    instrument = coflow.Instrument()
    coflow.add_instrument(instrument)
    try:
        return run_coflow(steps)
    finally:
        coflow.remove_instrument(instrument)


def time_snapshot(runners: int) -> float:
    """Seconds for ``coflow.inspect()`` with ``runners`` flows blocked in ``wait``."""
    backend = VirtualBackend()
    started = [coflow.start(coflow.wait(5.0), backend=backend) for _ in range(runners)]
    backend.advance(1.0)
    began = perf_counter()
    snapshot = coflow.inspect()
    elapsed = perf_counter() - began
    if len(snapshot.roots) < runners:
        raise RuntimeError(f"inspect: {len(snapshot.roots)} roots, expected {runners}")
    for runner in started:
        runner.stop()
    backend.run_until_idle()
    return elapsed


def measure(steps: int, runners: int, repeats: int) -> list[Row]:
    best = best_of(repeats, {
        "hooked": lambda: run_instrumented(steps),
        "plain": lambda: run_coflow(steps),
    })
    per_step = {name: seconds / steps * 1e9 for name, seconds in best.items()}
    snapshot = min(time_snapshot(runners) for _ in range(max(1, repeats // 2)))
    return [
        Row(f"step loop with a no-op Instrument: set_state x {steps:,}", "ns/step",
            per_step["hooked"], "no instrument", per_step["plain"],
            at_most(10.0, "n/a (reported)")),
        Row(f"inspect(): snapshot of {runners:,} waiting runners", "ms", snapshot * 1e3,
            "", None, at_most(100.0, "<= 100 ms", on="coflow")),
    ]
