"""Child flows: a parent flow doing ``yield call(trivial)`` N times, one child after the other.

The child is trivial: a flow that only counts itself and ends, so the figure
is what one ``call`` costs: making the child runner, starting it, its end,
and giving its final state back to the parent.  On the virtual backend that
is the scheduler's own cost; a second row runs the same parent on the
asyncio backend, which shows what the backend adds to a call.

The peer is asyncio's spawn-and-finish of a task, ``await
asyncio.create_task(trivial())`` N times on one loop, with a coroutine that
counts itself in the same way.  SPEC §8's target is absolute: at most 5 µs
per call (asyncio's task is shown beside it, as the peer).

What is timed: on coflow's side, from ``coflow.start`` of the parent to its
end (``result()`` on virtual, ``await runner.wait()`` on asyncio), so one
parent start is spread over the N calls; on the peer's side, the loop.  The
asyncio loop (a fresh one per round, from ``asyncio.run``) and coflow's
``AsyncioBackend`` on it are made before the clock starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import coflow
from coflow import call
from coflow.backends.asyncio import AsyncioBackend
from coflow.backends.virtual import VirtualBackend

from . import Row, Target, at_most, best_of

TARGET: Target = at_most(5.0, "<= 5 µs", on="coflow")
PEER = "await create_task(trivial())"


class Count:
    """How many children (or tasks) have run; both sides bump one."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def child_flow(count: Count) -> Callable[[], Generator[Any, Any, None]]:
    def trivial() -> Generator[Any, Any, None]:
        count.value += 1
        return
        yield  # a generator function: a flow with no steps

    return trivial


def parent_flow(calls: int, count: Count) -> Callable[[], Generator[Any, Any, None]]:
    trivial = child_flow(count)

    def calling() -> Generator[Any, Any, None]:
        for _ in range(calls):
            yield call(trivial)

    return calling


def _check(side: str, count: Count, calls: int) -> None:
    if count.value != calls:
        raise RuntimeError(f"children: {side} ran {count.value} children, expected {calls}")


def run_coflow_virtual(calls: int) -> float:
    """Seconds for a parent flow calling the trivial child ``calls`` times, on virtual time."""
    count = Count()
    calling = parent_flow(calls, count)
    # The run-away guard counts steps taken at one instant; this parent never blocks.
    backend = VirtualBackend(max_steps=4 * calls + 100)
    started = perf_counter()
    coflow.start(calling, initial_state=None, backend=backend).result()
    elapsed = perf_counter() - started
    _check("coflow (virtual)", count, calls)
    return elapsed


def run_coflow_asyncio(calls: int) -> float:
    """The same parent on coflow's asyncio backend, in its own ``asyncio.run``."""
    count = Count()
    calling = parent_flow(calls, count)

    async def timed() -> float:
        backend = AsyncioBackend()
        started = perf_counter()
        await coflow.start(calling, initial_state=None, backend=backend).wait()
        return perf_counter() - started

    elapsed = asyncio.run(timed())
    _check("coflow (asyncio)", count, calls)
    return elapsed


def run_asyncio_tasks(calls: int) -> float:
    """Seconds for ``await asyncio.create_task(trivial())`` ``calls`` times on one loop."""
    count = Count()

    async def trivial() -> None:
        count.value += 1

    async def timed() -> float:
        create_task = asyncio.create_task
        started = perf_counter()
        for _ in range(calls):
            await create_task(trivial())
        return perf_counter() - started

    elapsed = asyncio.run(timed())
    _check("asyncio", count, calls)
    return elapsed


def measure(calls: int, repeats: int) -> list[Row]:
    best = best_of(
        repeats,
        {
            "virtual": lambda: run_coflow_virtual(calls),
            "asyncio backend": lambda: run_coflow_asyncio(calls),
            "peer": lambda: run_asyncio_tasks(calls),
        },
    )
    per_call = {name: seconds / calls * 1e6 for name, seconds in best.items()}
    return [
        Row(
            f"child flows, virtual: call x {calls:,}",
            "µs/call",
            per_call["virtual"],
            PEER,
            per_call["peer"],
            TARGET,
        ),
        Row(
            f"child flows, asyncio: call x {calls:,}",
            "µs/call",
            per_call["asyncio backend"],
            PEER,
            per_call["peer"],
            TARGET,
        ),
    ]


def profile_target(calls: int) -> Callable[[], float]:
    return lambda: run_coflow_virtual(calls)
