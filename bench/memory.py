"""Memory: what one flow blocked in ``wait_until`` costs, beyond its state.

N flows are started on a virtual backend, each blocking on a predicate that is
never true, and ``run_until_idle`` lets every one reach its ``wait_until``.
``tracemalloc`` measures the memory allocated and still held across that, after
a full collection, divided by N.  The states are built before measuring starts,
so they are not counted; the handles (``Runner``s) kept by the caller are.

Peers, measured the same way: a bare suspended generator (the floor for any
generator-based flow), and an asyncio task whose coroutine awaits an
``asyncio.Event`` (one shared event, as the flows share one predicate).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable, Generator
from typing import Any

import coflow
from coflow import wait_until
from coflow.backends.virtual import VirtualBackend

from . import Row, at_most


def never(state: Any) -> bool:
    return False


def _blocked() -> Generator[Any, Any, None]:
    yield wait_until(never)


def _make_states(count: int) -> list[dict[str, Any]]:
    return [{"index": index, "ready": False} for index in range(count)]


def _traced(build: Callable[[], None]) -> int:
    """Bytes allocated by ``build()`` and still alive after a full collection."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _start_blocked(
    backend: VirtualBackend, states: list[dict[str, Any]], runners: list[Any]
) -> None:
    for index, state in enumerate(states):
        runners[index] = coflow.start(_blocked, initial_state=state, backend=backend)
    backend.run_until_idle()


def bytes_coflow(count: int) -> float:
    # Warm up first, so one-time costs (lazy imports, caches, code objects) stay out of the figure.
    warm_backend = VirtualBackend()
    warm_runners: list[Any] = [None] * 100
    _start_blocked(warm_backend, _make_states(100), warm_runners)

    backend = VirtualBackend()
    states = _make_states(count)
    runners: list[Any] = [None] * count
    used = _traced(lambda: _start_blocked(backend, states, runners))
    blocked = sum(1 for runner in runners if runner.status == "running")
    for runner in (*runners, *warm_runners):
        runner.stop()
    backend.run_until_idle()
    warm_backend.run_until_idle()
    if blocked != count:
        raise RuntimeError(f"memory: {count - blocked} of {count} flows were not left blocked")
    return used / count


def _bare(state: Any) -> Generator[None, None, None]:
    yield


def bytes_generator(count: int) -> float:
    states = _make_states(count)
    generators: list[Any] = [None] * count

    def build() -> None:
        for index, state in enumerate(states):
            generator = _bare(state)
            next(generator)
            generators[index] = generator

    return _traced(build) / count


def bytes_asyncio_task(count: int) -> float:
    states = _make_states(count)

    async def blocked(event: asyncio.Event, state: Any) -> None:
        await event.wait()

    async def main() -> int:
        event = asyncio.Event()
        tasks: list[Any] = [None] * count

        async def build() -> None:
            for index, state in enumerate(states):
                tasks[index] = asyncio.create_task(blocked(event, state))
            await asyncio.sleep(0)  # one turn of the loop: every task reaches event.wait()

        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await build()
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        event.set()
        await asyncio.gather(*tasks)
        return used

    return asyncio.run(main()) / count


def measure(count: int) -> list[Row]:
    per_flow = bytes_coflow(count)
    generator = bytes_generator(count)
    task = bytes_asyncio_task(count)
    line = f"memory: {count:,} flows blocked in wait_until"
    target = at_most(600, "<= 600 B/flow", on="coflow")
    return [
        Row(line, "bytes/flow", per_flow, "bare suspended generator", generator, target),
        Row(line, "bytes/flow", per_flow, "asyncio task on an Event", task, target),
    ]
