"""Memory: what one flow blocked in ``wait_until`` costs, beyond its state.

The flow is the common case SPEC §8 names: its predicate a lambda written in
the flow, so every flow holds one of its own::

    def blocked():
        yield wait_until(lambda state: state > 0)

N flows are started on a virtual backend, each on a state the predicate never
holds for, and ``run_until_idle`` lets every one reach its ``wait_until``.  The
states are built before measuring starts, so they are not counted; the handles
(``Runner``s) kept by the caller are.  Two measures:

- ``tracemalloc``: the memory allocated and still held across that, after a
  full collection, divided by N (what the objects themselves take).
- Resident memory: in a fresh interpreter, the growth of its resident set
  (``/proc/self/statm``) over 100,000 flows, divided by N: the objects, and
  what the allocator keeps around them.  The flows are started 1,000 at a
  time, each batch run to its ``wait_until``, as a service starts them: the
  figure is what a blocked flow holds, not what a queue of 100,000 starts not
  yet run leaves resident after it has drained (about 9 more bytes a flow).

Peers, measured the same way: a bare suspended generator with the same body,
holding the step it yielded (the floor for any generator-based flow: the
generator, the step and its lambda), and an asyncio task whose coroutine awaits
an ``asyncio.Event`` (one shared event).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import coflow
from coflow import wait_until
from coflow.backends.virtual import VirtualBackend

from . import Row, at_most

#: Flows started before running them, in the resident-memory measure.
BATCH = 1_000
TARGET = at_most(600, "<= 600 B/flow", on="coflow")


def _blocked() -> Generator[Any, Any, None]:
    yield wait_until(lambda state: state > 0)


def _make_states(count: int) -> list[int]:
    """States the predicate never holds for, each its own object, built before measuring."""
    return list(range(-1_000_000, -1_000_000 + count))


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
    backend: VirtualBackend, states: list[int], runners: list[Any], batch: int | None = None
) -> None:
    """Start a flow on each state, into ``runners``; run each ``batch`` (all, by default)."""
    step = batch or len(states)
    for first in range(0, len(states), step):
        for index in range(first, min(first + step, len(states))):
            runners[index] = coflow.start(_blocked, initial_state=states[index], backend=backend)
        backend.run_until_idle()


def _stop_all(backend: VirtualBackend, runners: list[Any], count: int) -> None:
    blocked = sum(1 for runner in runners if runner.status == "running")
    for runner in runners:
        runner.stop()
    backend.run_until_idle()
    if blocked != count:
        raise RuntimeError(f"memory: {count - blocked} of {count} flows were not left blocked")


def _warm_up() -> None:
    """One-time costs (lazy imports, caches, code objects) stay out of the figures."""
    backend = VirtualBackend()
    runners: list[Any] = [None] * 100
    _start_blocked(backend, _make_states(100), runners)
    _stop_all(backend, runners, 100)


def bytes_coflow(count: int) -> float:
    _warm_up()
    backend = VirtualBackend()
    states = _make_states(count)
    runners: list[Any] = [None] * count
    used = _traced(lambda: _start_blocked(backend, states, runners))
    _stop_all(backend, runners, count)
    return used / count


def _suspend_generators(generators: list[Any], steps: list[Any]) -> None:
    for index in range(len(generators)):
        generator = _blocked()
        steps[index] = next(generator)  # kept, as a scheduler keeps the step a flow waits on
        generators[index] = generator


def bytes_generator(count: int) -> float:
    generators: list[Any] = [None] * count
    steps: list[Any] = [None] * count
    return _traced(lambda: _suspend_generators(generators, steps)) / count


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


# -- resident memory, in a fresh interpreter ------------------------------------------


def _resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def resident_here(kind: str, count: int) -> float:
    """In this process: resident bytes per flow (``kind`` "coflow") or generator ("generator")."""
    states = _make_states(count)
    held: list[Any] = [None] * count
    steps: list[Any] = [None] * count
    backend = VirtualBackend()
    if kind == "coflow":
        _warm_up()
        build: Callable[[], None] = lambda: _start_blocked(backend, states, held, BATCH)  # noqa: E731
    elif kind == "generator":
        _suspend_generators([None] * 100, [None] * 100)
        build = lambda: _suspend_generators(held, steps)  # noqa: E731
    else:
        raise ValueError(f"memory: unknown kind {kind!r}")
    gc.collect()
    before = _resident_bytes()
    build()
    gc.collect()
    used = _resident_bytes() - before
    if kind == "coflow":
        _stop_all(backend, held, count)
    return used / count


def resident(kind: str, count: int) -> float | None:
    """``resident_here`` in a fresh interpreter; None where there is no ``/proc`` to read."""
    if not Path("/proc/self/statm").exists():
        return None
    # bench/ is found after the installed packages, so an installed coflow wins over the source
    # tree (whose backends/ becomes coflow.backends only when installed); run from elsewhere.
    repository = str(Path(__file__).resolve().parents[1])
    program = (
        f"import sys; sys.path.append({repository!r}); import runpy; "
        "runpy.run_module('bench.memory', run_name='__main__')"
    )
    output = subprocess.run(
        [sys.executable, "-c", program, kind, str(count)],
        cwd=tempfile.gettempdir(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(output)


def measure(count: int, rss_count: int = 100_000) -> list[Row]:
    per_flow = bytes_coflow(count)
    generator = bytes_generator(count)
    task = bytes_asyncio_task(count)
    line = f"memory: {count:,} flows blocked in wait_until, tracemalloc"
    rss_line = f"memory: {rss_count:,} flows blocked in wait_until, resident"
    return [
        Row(line, "bytes/flow", per_flow, "bare suspended generator", generator, TARGET),
        Row(line, "bytes/flow", per_flow, "asyncio task on an Event", task, TARGET),
        Row(rss_line, "bytes/flow", resident("coflow", rss_count), "bare suspended generator",
            resident("generator", rss_count), TARGET),
    ]


if __name__ == "__main__":
    print(resident_here(sys.argv[1], int(sys.argv[2])))
