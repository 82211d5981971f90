"""Soak: starting and stopping flows, cycle after cycle, leaks nothing on any backend.

``python -m bench.soak [--cycles N] [--backend NAME ...]`` (from the repository root).
One cycle starts a batch of flows, each blocked in a different kind of step,
stops them all and waits until each has ended.  One cycle in three signals
and sends to every flow and lets them apply it first; one in three does so
just before the stop, which overtakes them.

A leak shows as growth between a sample taken after a warm-up (1 % of the
cycles, at least 20, so what starts lazily has started) and one at the end.
Live threads, asyncio tasks, greenlets and ``Runner`` objects, counted after
a full collection, may not grow at all.  RSS may grow by 10 % + 2 MiB: the
allocator keeps some freed memory, and the counts already catch a leaked
runner; RSS is for what they cannot see, such as timers left on a heap.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import coflow
from coflow.backends.virtual import VirtualBackend

from . import machine_summary

BACKENDS = ("virtual", "asyncio", "gevent", "threads")
HOUR = 3600.0
#: Seconds any one wait of the soak may take before it counts as a hang.
LIMIT = 10.0
#: Work one cycle has in flight at once: the run, and two each in the parallel and the race.
#: The threads backend's pool gets exactly that many threads, so it is full after one cycle.
WORK_PER_CYCLE = 5
RSS_GROWTH = 0.10
RSS_SLACK_KIB = 2048
#: What a sample counts, and the table shows, before → after; RSS last.
MEASURES = ("threads", "tasks", "greenlets", "runners", "rss_kib")


def never(state: Any) -> bool:
    return False


def bump(count: int) -> int:
    return count + 1


def waits(item: int = 0) -> Generator[Any, Any, None]:
    """A child, a sub-flow, or one per item of ``each``."""
    yield coflow.wait(HOUR)


def batch(work: Callable[..., Any]) -> list[Any]:
    """One flow per kind of blocking step; ``work`` is the backend's blocking ``run`` work.

    Steps are values, so one batch serves every cycle; on the virtual clock the
    work returns at once, and the flows that run it block in the wait after it.
    """
    long_wait = coflow.wait(HOUR)
    return [
        long_wait,
        coflow.wait_until(never),  # every signal re-checks it, in vain
        coflow.debounce(HOUR),  # every signal restarts it
        coflow.repeat(coflow.receive()),  # a message wakes it: it waits for the next
        coflow.sequence(coflow.run(work), long_wait),
        coflow.parallel([work, work, long_wait]),
        coflow.sequence(coflow.race([work, work, waits]), long_wait),
        coflow.timeout(long_wait, 2 * HOUR),
        coflow.call(waits),
        coflow.sequence(coflow.spawn(waits), long_wait),
        coflow.each(lambda state: range(3), waits),
    ]


def returns(state: Any = None) -> None:
    """Virtual work runs inline, so it cannot block: it returns, and its flow blocks after it."""


async def sleeps(state: Any = None) -> None:
    await asyncio.sleep(HOUR)


class BlockingWork:
    """Work that waits as a user's call does, on an event with a timeout, until released.

    A pool thread cannot be killed, so a stopped flow's work keeps its thread
    until it returns; the soak ends each cycle's work as a service would
    answer it, and waits until it has, so no thread is left stuck.
    """

    def __init__(self, make_event: Callable[[], Any]) -> None:
        self._make_event = make_event
        self._event = make_event()
        self._running = 0
        self._changed = threading.Condition()

    def __call__(self, state: Any = None) -> None:
        event = self._event  # a late start of a released cycle finds its event set
        with self._changed:
            self._running += 1
        try:
            event.wait(6 * LIMIT)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def release(self) -> None:
        self._event.set()
        with self._changed:
            # On gevent the stop killed the greenlets before their runners ended: no wait there.
            if not self._changed.wait_for(lambda: not self._running, LIMIT):
                raise RuntimeError(f"soak: {self._running} work still running after release")
        self._event = self._make_event()


@dataclass(frozen=True)
class Harness:
    backend: Any
    flows: list[Any]
    count_tasks: Callable[[], int | None] = lambda: None
    release: Callable[[], None] = lambda: None


@contextlib.contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop running in its own thread, so this thread can block on its flows."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="soak-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def count_tasks(loop: asyncio.AbstractEventLoop) -> int:
    counted: concurrent.futures.Future[int] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: counted.set_result(len(asyncio.all_tasks(loop))))
    return counted.result(timeout=LIMIT)


@contextlib.contextmanager
def make_harness(name: str) -> Iterator[Harness]:
    """A fresh backend of that name, and the batch of flows it runs each cycle."""
    if name == "virtual":
        yield Harness(VirtualBackend(), batch(returns))
    elif name == "asyncio":
        from coflow.backends.asyncio import AsyncioBackend

        with loop_in_thread() as loop:
            yield Harness(AsyncioBackend(loop), batch(sleeps), lambda: count_tasks(loop))
    elif name in ("threads", "gevent"):
        if name == "threads":
            from coflow.backends.threads import ThreadBackend

            backend: Any = ThreadBackend(max_workers=WORK_PER_CYCLE)
            work = BlockingWork(threading.Event)
        else:
            from gevent.event import Event

            from coflow.backends.gevent import GeventBackend

            backend, work = GeventBackend(), BlockingWork(Event)
        try:
            yield Harness(backend, batch(work), release=work.release)
        finally:
            backend.close()
    else:
        raise ValueError(f"soak: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


def settle(backend: Any) -> None:
    """Let every flow started so far run up to the step it blocks in.

    Ready work runs in FIFO order, so a flow started now ends after the turns
    asked before it; a second one waits for the children those turns started.
    """
    if isinstance(backend, VirtualBackend):
        backend.advance(1.0)  # all that is ready runs first, children too; then a second passes
        return
    for _ in range(2):
        coflow.start(coflow.get_state(), backend=backend).result(timeout=LIMIT)


def cycle(harness: Harness, index: int) -> None:
    """Start the batch, let it block, stop it, and check every runner and child ended stopped.

    One cycle in three signals and sends to every flow, and lets them apply
    it; one in three does so just before the stop, which overtakes them.
    """
    backend = harness.backend
    runners = [coflow.start(flow, initial_state=0, backend=backend) for flow in harness.flows]
    settle(backend)
    futures = []
    if index % 3:
        for runner in runners:
            futures.append(runner.signal(bump))
            runner.send("ping")
        if index % 3 == 1:
            settle(backend)
    children = [child for runner in runners for child in runner.children()]
    for runner in runners:
        runner.stop()
    for runner in (*runners, *children):
        try:
            runner.result(timeout=LIMIT)
        except coflow.FlowStopped:
            continue
        raise RuntimeError(f"soak: {runner!r} ended, not stopped")
    harness.release()
    if not all(future.done() for future in futures):
        raise RuntimeError("soak: a signal's future was never settled")


@dataclass(frozen=True)
class Sample:
    threads: int
    tasks: int | None  # of the asyncio loop, on asyncio only
    greenlets: int | None  # on gevent only
    runners: int
    rss_kib: int


def rss_kib() -> int:
    """Resident memory now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def sample(harness: Harness) -> Sample:
    """The measures, once the backend is quiet.

    A pool thread released by the last cycle may still be posting its discarded
    outcome, which holds its runner until the scheduler has run it: so runners
    are counted after a pause and one more flow run to the end (not counted).
    """
    time.sleep(0.1)
    last = coflow.start(coflow.get_state(), backend=harness.backend)
    last.result(timeout=LIMIT)
    gc.collect()
    objects = gc.get_objects()
    runners = sum(isinstance(each, coflow.Runner) and each is not last for each in objects)
    greenlets = None
    if harness.backend.name == "gevent":
        from greenlet import greenlet

        greenlets = sum(isinstance(each, greenlet) for each in objects)
    del objects
    return Sample(threading.active_count(), harness.count_tasks(), greenlets, runners, rss_kib())


@dataclass(frozen=True)
class SoakResult:
    backend: str
    cycles: int
    seconds: float
    before: Sample
    after: Sample

    @property
    def rss_limit_kib(self) -> int:
        return int(self.before.rss_kib * (1 + RSS_GROWTH)) + RSS_SLACK_KIB

    def leaks(self) -> list[str]:
        """Each measure that grew past its tolerance, with its figures; empty if none did."""
        found = []
        for name in MEASURES[:-1]:
            before, after = getattr(self.before, name), getattr(self.after, name)
            if before is not None and after > before:
                found.append(f"{name} {before} → {after}")
        if self.after.rss_kib > self.rss_limit_kib:
            found.append(f"RSS {self.after.rss_kib} KiB > {self.rss_limit_kib} KiB allowed")
        return found


def soak(backend_name: str, cycles: int) -> SoakResult:
    """``cycles`` timed cycles on a fresh backend, after the warm-up, sampled around them."""
    if cycles < 1:
        raise ValueError(f"soak: cycles must be at least 1, got {cycles}")
    warmup = max(20, cycles // 100)
    with make_harness(backend_name) as harness:
        for index in range(warmup):
            cycle(harness, index)
        before = sample(harness)
        started = time.perf_counter()
        for index in range(warmup, warmup + cycles):
            cycle(harness, index)
        seconds = time.perf_counter() - started
        after = sample(harness)
    return SoakResult(backend_name, cycles, seconds, before, after)


def format_table(results: list[SoakResult]) -> str:
    lines: list[tuple[str, ...]] = [("backend", "cycles", "seconds", "cycles/s", *MEASURES)]
    for result in results:
        figures = [(getattr(result.before, name), getattr(result.after, name)) for name in MEASURES]
        measures = [
            "—" if old is None else f"{old} → {new} ({new - old:+})" for old, new in figures
        ]
        speed = f"{result.cycles / result.seconds:,.0f}"
        lines.append(
            (result.backend, f"{result.cycles:,}", f"{result.seconds:.1f}", speed, *measures)
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    rows = ["  ".join(map(str.ljust, line, widths)).rstrip() for line in lines]
    return "\n".join([rows[0], "  ".join("-" * width for width in widths), *rows[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description="Start and stop flows; nothing may leak."
    )
    parser.add_argument("--cycles", type=int, default=10_000, help="per backend (default 10,000)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, dest="backends")
    args = parser.parse_args(argv)
    print(machine_summary(), end="\n\n")
    results, leaks = [], []
    for name in args.backends or BACKENDS:
        if name == "gevent" and importlib.util.find_spec("gevent") is None:
            print("gevent: skipped, gevent is not installed")
            continue
        results.append(soak(name, args.cycles))
        leaks += [f"{name}: {leak}" for leak in results[-1].leaks()]
    print(format_table(results))
    print(f"\nCounts may not grow; RSS may grow {RSS_GROWTH:.0%} + {RSS_SLACK_KIB} KiB.")
    print("\n".join(["Leaks:", *leaks]) if leaks else "No leaks.")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
