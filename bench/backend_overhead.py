"""Backend overhead: ``run`` and ``parallel`` on asyncio, gevent and threads, against direct code.

For each real backend, two models with trivial work (it returns ``None`` at
once: an ``async def`` on asyncio, a plain function on gevent and threads), so
the figures are the cost of starting work and getting its result back:

- run steps: a flow doing ``yield run(work)`` N times, against N times
  ``await asyncio.create_task(work(None))``, ``gevent.spawn(work, None).get()``
  or ``pool.submit(work, None).result()`` (``run`` calls ``work(state)``, so the
  peers pass an argument too).  Figure: µs per step.
- parallel: a flow doing one ``yield parallel([work] * T)``, against
  ``asyncio.gather`` of T tasks, ``gevent.joinall`` of T greenlets, or T
  ``pool.submit(work)`` and then every ``result()``.  Figure: µs per task.

SPEC §8 allows coflow 1.3x its peer on each.

What is timed: on coflow's side, from ``coflow.start`` to the flow's end
(``await runner.wait()`` on asyncio; ``runner.result()`` from the main greenlet
or thread elsewhere); on the peer's side, the loop above.  Left out of the
timing on both sides alike: making the asyncio event loop (``asyncio.run``
makes a fresh one per round; coflow's ``AsyncioBackend`` is made on it before
the clock starts), the ``GeventBackend``, and on threads one
``ThreadBackend(max_workers=K)`` and one ``ThreadPoolExecutor(K)`` kept for all
rounds, so that after the first round neither side pays for starting threads
(K is the threads backend's default pool size unless told otherwise).

If gevent is not installed, its rows say so and have no figures.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any

import coflow
from coflow import Backend, parallel, run
from coflow.backends.asyncio import AsyncioBackend
from coflow.backends.threads import DEFAULT_MAX_WORKERS, ThreadBackend

from . import Row, Target, at_most, best_of

FlowFunction = Callable[[], Generator[Any, Any, None]]

TARGET: Target = at_most(1.3, "<= 1.3x")
#: The units of the run-steps row and the parallel row.
UNITS = ("µs/step", "µs/task")


def sync_work(state: object = None) -> None:
    """The work on gevent and threads: nothing, so only the backend's cost is left."""


async def async_work(state: object = None) -> None:
    """The work on asyncio: a coroutine function, so both sides run it as a task on the loop."""


def steps_flow(fn: Callable[..., Any], steps: int) -> FlowFunction:
    def stepping() -> Generator[Any, Any, None]:
        for _ in range(steps):
            yield run(fn)

    return stepping


def parallel_flow(fn: Callable[..., Any], tasks: int) -> FlowFunction:
    def fanning_out() -> Generator[Any, Any, None]:
        results = yield parallel([fn] * tasks)
        if len(results) != tasks:
            raise RuntimeError(f"backend overhead: parallel gave {len(results)} results")

    return fanning_out


def run_blocking(flow: FlowFunction, backend: Backend) -> float:
    """Seconds from ``start`` to the end of ``flow``, waited for with ``runner.result()``."""
    started = perf_counter()
    coflow.start(flow, backend=backend, initial_state=None).result()
    return perf_counter() - started


class Harness(ABC):
    """One backend: coflow's side and the same work written directly, each timing itself.

    A harness may own threads or a pool: ``close()`` it when done.
    """

    name: str
    #: How the peer does the run-steps and the parallel models, for the table.
    steps_peer: str
    parallel_peer: str
    #: What both sides run; a static method, so it is never bound to the harness.
    work: Callable[..., Any]

    @abstractmethod
    def run_coflow(self, flow: FlowFunction) -> float:
        """Seconds for coflow to run ``flow`` to its end on this backend."""

    @abstractmethod
    def run_peer_steps(self, steps: int) -> float:
        """Seconds for the direct code to run ``work`` ``steps`` times, one after the other."""

    @abstractmethod
    def run_peer_parallel(self, tasks: int) -> float:
        """Seconds for the direct code to run ``tasks`` ``work`` at once and wait for all."""

    def close(self) -> None:  # noqa: B027 - only the harnesses that own a backend override it
        """Release the backend and pool the harness made."""


class AsyncioHarness(Harness):
    """Each round runs in its own ``asyncio.run``, as an async program would."""

    name = "asyncio"
    steps_peer = "await create_task(work())"
    parallel_peer = "gather(*create_task(work()))"
    work = staticmethod(async_work)

    def run_coflow(self, flow: FlowFunction) -> float:
        async def timed() -> float:
            backend = AsyncioBackend()
            started = perf_counter()
            await coflow.start(flow, backend=backend, initial_state=None).wait()
            return perf_counter() - started

        return asyncio.run(timed())

    def run_peer_steps(self, steps: int) -> float:
        async def timed() -> float:
            started = perf_counter()
            for _ in range(steps):
                await asyncio.create_task(async_work(None))
            return perf_counter() - started

        return asyncio.run(timed())

    def run_peer_parallel(self, tasks: int) -> float:
        async def timed() -> float:
            started = perf_counter()
            await asyncio.gather(*(asyncio.create_task(async_work()) for _ in range(tasks)))
            return perf_counter() - started

        return asyncio.run(timed())


class GeventHarness(Harness):
    """Both sides wait from the main greenlet; the work runs in greenlets of the same hub."""

    name = "gevent"
    steps_peer = "gevent.spawn(work).get()"
    parallel_peer = "gevent.joinall(spawn(work))"
    work = staticmethod(sync_work)

    def __init__(self) -> None:
        from coflow.backends.gevent import GeventBackend

        self.backend = GeventBackend()

    def run_coflow(self, flow: FlowFunction) -> float:
        return run_blocking(flow, self.backend)

    def run_peer_steps(self, steps: int) -> float:
        import gevent

        started = perf_counter()
        for _ in range(steps):
            gevent.spawn(sync_work, None).get()
        return perf_counter() - started

    def run_peer_parallel(self, tasks: int) -> float:
        import gevent

        started = perf_counter()
        gevent.joinall([gevent.spawn(sync_work) for _ in range(tasks)], raise_error=True)
        return perf_counter() - started

    def close(self) -> None:
        self.backend.close()


class ThreadsHarness(Harness):
    """A ``ThreadBackend`` and a ``ThreadPoolExecutor`` with the same number of workers."""

    steps_peer = "pool.submit(work).result()"
    parallel_peer = "submit all, then result()"
    work = staticmethod(sync_work)

    def __init__(self, workers: int = DEFAULT_MAX_WORKERS) -> None:
        self.name = f"threads ({workers} workers)"
        self.backend = ThreadBackend(max_workers=workers)
        self.pool = ThreadPoolExecutor(workers)

    def run_coflow(self, flow: FlowFunction) -> float:
        return run_blocking(flow, self.backend)

    def run_peer_steps(self, steps: int) -> float:
        submit = self.pool.submit
        started = perf_counter()
        for _ in range(steps):
            submit(sync_work, None).result()
        return perf_counter() - started

    def run_peer_parallel(self, tasks: int) -> float:
        submit = self.pool.submit
        started = perf_counter()
        for future in [submit(sync_work) for _ in range(tasks)]:
            future.result()
        return perf_counter() - started

    def close(self) -> None:
        self.backend.close()
        self.pool.shutdown()


def line_names(backend: str, steps: int, tasks: int) -> tuple[str, str]:
    return (
        f"backend overhead, {backend}: run x {steps:,}",
        f"backend overhead, {backend}: parallel of {tasks:,}",
    )


def measure_backend(harness: Harness, steps: int, tasks: int, repeats: int) -> list[Row]:
    """Both models on one backend, coflow and peer alternating; closes the harness."""
    stepping = steps_flow(harness.work, steps)
    fanning_out = parallel_flow(harness.work, tasks)
    try:
        best = best_of(repeats, {
            "coflow steps": lambda: harness.run_coflow(stepping),
            "peer steps": lambda: harness.run_peer_steps(steps),
            "coflow parallel": lambda: harness.run_coflow(fanning_out),
            "peer parallel": lambda: harness.run_peer_parallel(tasks),
        })
    finally:
        harness.close()
    per_step, per_task = 1e6 / steps, 1e6 / tasks
    steps_line, parallel_line = line_names(harness.name, steps, tasks)
    return [
        Row(steps_line, UNITS[0], best["coflow steps"] * per_step, harness.steps_peer,
            best["peer steps"] * per_step, TARGET),
        Row(parallel_line, UNITS[1], best["coflow parallel"] * per_task, harness.parallel_peer,
            best["peer parallel"] * per_task, TARGET),
    ]


def gevent_available() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


def measure(steps: int, tasks: int, repeats: int, workers: int = DEFAULT_MAX_WORKERS) -> list[Row]:
    rows = measure_backend(AsyncioHarness(), steps, tasks, repeats)
    if gevent_available():
        rows += measure_backend(GeventHarness(), steps, tasks, repeats)
    else:
        rows += [Row(line, unit, None, "gevent (not installed)", None, TARGET)
                 for line, unit in zip(line_names("gevent", steps, tasks), UNITS)]
    rows += measure_backend(ThreadsHarness(workers), steps, tasks, repeats)
    return rows


def profile_target(steps: int, tasks: int) -> Callable[[], float]:
    """coflow's side on asyncio, where the scheduler and the work share the profiled thread.

    (On threads the scheduler has its own thread, which cProfile does not see.)
    """
    harness = AsyncioHarness()
    stepping = steps_flow(async_work, steps)
    fanning_out = parallel_flow(async_work, tasks)
    return lambda: harness.run_coflow(stepping) + harness.run_coflow(fanning_out)
