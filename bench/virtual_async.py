"""Async work in virtual time: N tasks each awaiting ``asyncio.sleep`` K times.

The same coroutine runs three ways, side by side:

- on coflow's virtual event loop (``coflow.testing.run_virtual``), sleeping
  one virtual second each time: K seconds of virtual time, no wall time;
- on coflow's virtual clock as flows' work (``run(work)`` on a ``VirtualBackend``,
  whose hosted loop runs the tasks);
- on a real asyncio loop with zero-second sleeps, the fastest a real loop can
  go through the same awaits (the peer, and the target: virtual time should
  cost no more than that); and with one-microsecond sleeps, which like the
  virtual ones go through the loop's timer heap (a zero-second sleep does not);
- with looptime, when it is installed, sleeping one virtual second each time.
  It is no extra of coflow's: its pytest plugin makes an event loop for every
  test of a session, which coflow's own suite, warnings as errors, refuses.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from time import perf_counter
from typing import Any

import coflow
from coflow import run
from coflow.backends.virtual import VirtualBackend
from coflow.testing import run_virtual

from . import Row, at_most, best_of


async def _sleeper(sleeps: int, seconds: float) -> None:
    for _ in range(sleeps):
        await asyncio.sleep(seconds)


async def _all(tasks: int, sleeps: int, seconds: float) -> None:
    await asyncio.gather(*(_sleeper(sleeps, seconds) for _ in range(tasks)))


def _timed(body: Callable[[], Any]) -> float:
    started = perf_counter()
    body()
    return perf_counter() - started


def run_virtual_loop(tasks: int, sleeps: int) -> float:
    return _timed(lambda: run_virtual(_all(tasks, sleeps, 1.0)))


def run_virtual_backend(tasks: int, sleeps: int) -> float:
    def body() -> None:
        backend = VirtualBackend()

        async def work(state: Any) -> None:
            await _sleeper(sleeps, 1.0)

        runners = [coflow.start(run(work), backend=backend) for _ in range(tasks)]
        backend.run()
        if backend.now() != sleeps or any(runner.status != "done" for runner in runners):
            raise RuntimeError("virtual async work: the flows did not all end at the last sleep")
        backend.close()

    return _timed(body)


def run_real_zero(tasks: int, sleeps: int) -> float:
    return _timed(lambda: asyncio.run(_all(tasks, sleeps, 0.0)))


def run_real_timers(tasks: int, sleeps: int) -> float:
    return _timed(lambda: asyncio.run(_all(tasks, sleeps, 1e-6)))


def run_looptime(tasks: int, sleeps: int) -> float:
    import looptime  # type: ignore[import-not-found]

    async def main() -> None:
        await _all(tasks, sleeps, 1.0)

    def body() -> None:
        original = asyncio.new_event_loop()
        loop = looptime.patch_event_loop(original, start=0)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
            original.close()

    return _timed(body)


def measure(tasks: int, sleeps: int, repeats: int) -> list[Row]:
    sides: dict[str, Callable[[], float]] = {
        "virtual loop": lambda: run_virtual_loop(tasks, sleeps),
        "virtual backend": lambda: run_virtual_backend(tasks, sleeps),
        "real zero": lambda: run_real_zero(tasks, sleeps),
        "real timers": lambda: run_real_timers(tasks, sleeps),
    }
    has_looptime = importlib.util.find_spec("looptime") is not None
    if has_looptime:
        sides["looptime"] = lambda: run_looptime(tasks, sleeps)
    best = best_of(repeats, sides)
    line = f"virtual async work: {tasks:,} tasks x {sleeps} asyncio.sleep(1)"
    target = at_most(1.0, "<= 1x (as fast)")
    zero = "real loop, asyncio.sleep(0)"
    rows = [
        Row(f"{line}, virtual loop", "ms", best["virtual loop"] * 1e3, zero,
            best["real zero"] * 1e3, target),
        Row(f"{line}, run() work on the virtual clock", "ms", best["virtual backend"] * 1e3,
            zero, best["real zero"] * 1e3, target),
        Row(f"{line}, virtual loop", "ms", best["virtual loop"] * 1e3,
            "real loop, asyncio.sleep(1 µs)", best["real timers"] * 1e3, target),
    ]
    if has_looptime:
        rows.append(Row(f"{line}, virtual loop", "ms", best["virtual loop"] * 1e3,
                        "looptime, asyncio.sleep(1)", best["looptime"] * 1e3,
                        at_most(1.0, "<= 1x (as fast)")))
    return rows
