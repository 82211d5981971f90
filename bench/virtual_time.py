"""Virtual time: many flows, each doing a series of random ``wait``s, on the virtual clock.

The same model runs on simpy (``env.process`` of a generator doing
``yield env.timeout(delay)``).  Both sides get the very same delays, drawn once
from a seeded ``random.Random`` before timing starts, and both must end at the
same virtual instant (checked), so they did the same work.  The figure is
events (waits completed) per second of wall time, starting the processes included.

The lines: the model at 1,000, 10,000 and 100,000 flows of 100 waits (events
per second must not fall as flows are added: the heap's cost per event grows
with the log of its size, nothing more), and 1,000 flows of 1,000 waits, where
starting a flow weighs least and the cost of an event is nearly all there is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import coflow
from coflow import wait
from coflow.backends.virtual import VirtualBackend

from . import Row, Target, at_least, best_of

SEED = 20_240_601
#: The issue's targets: events/s at least this many times simpy's.
SCALING_TARGET = at_least(1.5, ">= 1.5x")
LONG_TARGET = at_least(2.0, ">= 2x")
#: The issue's models: the scaling lines' flows (100 waits each), and the long-flow line.
SCALING_FLOWS = (1_000, 10_000, 100_000)
SCALING_WAITS = 100
LONG_MODEL = (1_000, 1_000)

#: A side of the comparison: runs the model on the given delays, returns (seconds, final time).
Model = Callable[[list[list[float]]], tuple[float, float]]


def make_delays(flows: int, waits: int, seed: int = SEED) -> list[list[float]]:
    """``flows`` lists of ``waits`` delays, uniform in [0, 1) seconds, from one seeded generator."""
    draw = random.Random(seed).random
    return [[draw() for _ in range(waits)] for _ in range(flows)]


def _waiter(delays: list[float]) -> Generator[Any, Any, None]:
    for delay in delays:
        yield wait(delay)


def run_coflow(delays: list[list[float]]) -> tuple[float, float]:
    """(seconds, final virtual time) for starting every flow and ``backend.run()``."""
    started = perf_counter()
    backend = VirtualBackend()
    for flow_delays in delays:
        coflow.start(_waiter(flow_delays), initial_state=None, backend=backend)
    backend.run()
    elapsed = perf_counter() - started
    return elapsed, backend.now()


def run_simpy(delays: list[list[float]]) -> tuple[float, float]:
    """(seconds, final simulated time) for the same model on simpy."""
    import simpy

    def waiter(env: Any, flow_delays: list[float]) -> Generator[Any, Any, None]:
        timeout = env.timeout
        for delay in flow_delays:
            yield timeout(delay)

    started = perf_counter()
    env = simpy.Environment()
    for flow_delays in delays:
        env.process(waiter(env, flow_delays))
    env.run()
    elapsed = perf_counter() - started
    return elapsed, float(env.now)


def simpy_available() -> bool:
    try:
        import simpy  # noqa: F401
    except ImportError:
        return False
    return True


def measure(
    flows: int,
    waits: int,
    repeats: int,
    *,
    scaled_from: str | None = None,
    target: Target = SCALING_TARGET,
    max_events: int | None = None,
) -> list[Row]:
    """One line: ``flows`` flows of ``waits`` waits, on coflow and on simpy.

    With ``max_events``, a big model runs fewer rounds, so that each side runs
    at most that many events in all (one round at least): its one run is long
    enough to be steady.
    """
    delays = make_delays(flows, waits)
    events = flows * waits
    # The last flow to finish ends at the largest per-flow sum, on both sides.
    expected_end = max(sum(flow_delays) for flow_delays in delays)
    ends: dict[str, float] = {}

    def timed(name: str, runner: Model) -> Callable[[], float]:
        def contender() -> float:
            elapsed, end = runner(delays)
            ends[name] = end
            return elapsed
        return contender

    contenders = {"coflow": timed("coflow", run_coflow)}
    have_simpy = simpy_available()
    if have_simpy:
        contenders["simpy"] = timed("simpy", run_simpy)
    if max_events is not None:
        repeats = max(1, min(repeats, max_events // events))
    best = best_of(repeats, contenders)
    for name, end in ends.items():
        if abs(end - expected_end) > 1e-9 * max(1.0, expected_end):
            raise RuntimeError(
                f"virtual_time: {name} ended at t={end!r}, expected t={expected_end!r}"
            )

    line = f"virtual time: {flows:,} flows x {waits} waits"
    if scaled_from:
        line += f" (scaled down from {scaled_from})"
    per_second = {name: events / seconds for name, seconds in best.items()}
    peer = "simpy" if have_simpy else "simpy (not installed)"
    return [
        Row(line, "events/s", per_second["coflow"], peer, per_second.get("simpy"), target),
    ]


def measure_all(
    scaling: tuple[tuple[int, int], ...],
    long_model: tuple[int, int],
    repeats: int,
    max_events: int,
) -> list[Row]:
    """The scaling lines, ``(flows, waits)`` each, then the long-flow line.

    A line smaller than the issue's model (``SCALING_FLOWS`` x ``SCALING_WAITS``,
    ``LONG_MODEL``) says what it is scaled down from.
    """
    rows: list[Row] = []
    for (flows, waits), issue_flows in zip(scaling, SCALING_FLOWS):
        issue = (issue_flows, SCALING_WAITS)
        rows += measure(
            flows, waits, repeats, max_events=max_events,
            scaled_from=None if (flows, waits) == issue else f"{issue_flows:,} x {SCALING_WAITS}",
        )
    long_flows, long_waits = long_model
    scaled = long_model != LONG_MODEL
    rows += measure(
        long_flows, long_waits, repeats, max_events=max_events, target=LONG_TARGET,
        scaled_from=f"{LONG_MODEL[0]:,} x {LONG_MODEL[1]:,}" if scaled else None,
    )
    return rows


def profile_target(flows: int, waits: int) -> Callable[[], float]:
    delays = make_delays(flows, waits)
    return lambda: run_coflow(delays)[0]
