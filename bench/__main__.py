"""``python -m bench [--quick] [--only LINE ...] [--profile LINE]``: print coflow's benchmark table.

``--quick`` uses sizes that finish in well under a minute on a 2-core machine
(the virtual-time line is scaled down and says so); without it the sizes are
those of SPEC §8 or larger.  ``--profile LINE`` runs coflow's side of one line
under cProfile and prints the 15 functions with the most own time, instead of
the table.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from . import Row, format_table, machine_summary


@dataclass(frozen=True)
class Sizes:
    repeats: int
    sync_steps: int
    #: (flows, waits) of each scaling line, then of the long-flow line.
    virtual_scaling: tuple[tuple[int, int], ...]
    virtual_long: tuple[int, int]
    #: Events each side runs in all rounds of one virtual-time line together, at most.
    virtual_events: int
    memory_flows: int
    rss_flows: int
    signals: int
    retry_runs: int
    retry_attempts: int
    overhead_steps: int
    overhead_tasks: int
    child_calls: int
    async_tasks: int = 10_000
    async_sleeps: int = 10
    web_subscribers: int = 1_000
    web_events: int = 100
    inspect_runners: int = 10_000


QUICK = Sizes(repeats=5, sync_steps=200_000,
              virtual_scaling=((1_000, 100), (10_000, 30), (100_000, 3)),
              virtual_long=(1_000, 150), virtual_events=300_000, memory_flows=10_000,
              rss_flows=20_000, signals=100_000, retry_runs=2_000, retry_attempts=10,
              overhead_steps=10_000, overhead_tasks=10_000, child_calls=20_000,
              async_tasks=2_000, web_events=20)
FULL = Sizes(repeats=5, sync_steps=1_000_000,
             virtual_scaling=((1_000, 100), (10_000, 100), (100_000, 100)),
             virtual_long=(1_000, 1_000), virtual_events=4_000_000, memory_flows=10_000,
             rss_flows=100_000, signals=1_000_000, retry_runs=20_000, retry_attempts=10,
             overhead_steps=100_000, overhead_tasks=10_000, child_calls=100_000)

LINES = ("sync_steps", "virtual_time", "memory", "signals", "retry", "backend_overhead", "children",
         "virtual_async", "web", "instrument")
PROFILED = ("sync_steps", "virtual_time", "signals", "retry", "backend_overhead", "children")


def measure_line(name: str, sizes: Sizes) -> list[Row]:
    if name == "sync_steps":
        from . import sync_steps
        return sync_steps.measure(sizes.sync_steps, sizes.repeats)
    if name == "virtual_time":
        from . import virtual_time
        return virtual_time.measure_all(
            sizes.virtual_scaling, sizes.virtual_long, sizes.repeats, sizes.virtual_events
        )
    if name == "memory":
        from . import memory
        return memory.measure(sizes.memory_flows, rss_count=sizes.rss_flows)
    if name == "signals":
        from . import signals
        return signals.measure(sizes.signals, sizes.repeats)
    if name == "retry":
        from . import retry
        return retry.measure(sizes.retry_runs, sizes.retry_attempts, sizes.repeats)
    if name == "backend_overhead":
        from . import backend_overhead
        return backend_overhead.measure(sizes.overhead_steps, sizes.overhead_tasks, sizes.repeats)
    if name == "children":
        from . import children
        return children.measure(sizes.child_calls, sizes.repeats)
    if name == "virtual_async":
        from . import virtual_async
        return virtual_async.measure(sizes.async_tasks, sizes.async_sleeps, sizes.repeats)
    if name == "web":
        from . import web
        return web.measure(sizes.web_subscribers, sizes.web_events, sizes.repeats)
    if name == "instrument":
        from . import instrument
        return instrument.measure(sizes.sync_steps, sizes.inspect_runners, sizes.repeats)
    raise ValueError(f"unknown benchmark line {name!r}; choose from {', '.join(LINES)}")


def profile_target(name: str, sizes: Sizes) -> Callable[[], float]:
    if name == "sync_steps":
        from . import sync_steps
        return sync_steps.profile_target(sizes.sync_steps)
    if name == "virtual_time":
        from . import virtual_time
        return virtual_time.profile_target(*sizes.virtual_scaling[1])
    if name == "signals":
        from . import signals
        return signals.profile_target(sizes.signals)
    if name == "retry":
        from . import retry
        return retry.profile_target(sizes.retry_runs, sizes.retry_attempts)
    if name == "backend_overhead":
        from . import backend_overhead
        return backend_overhead.profile_target(sizes.overhead_steps, sizes.overhead_tasks)
    if name == "children":
        from . import children
        return children.profile_target(sizes.child_calls)
    raise ValueError(f"no profile for {name!r}; choose from {', '.join(PROFILED)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: finishes in under a minute")
    parser.add_argument("--only", nargs="+", choices=LINES, metavar="LINE",
                        help=f"run only these lines ({', '.join(LINES)})")
    parser.add_argument("--profile", choices=PROFILED, metavar="LINE",
                        help="profile coflow's side of one line (top 15 by own time)")
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else FULL
    mode = "quick" if options.quick else "full"

    print(machine_summary())
    if options.profile:
        target = profile_target(options.profile, sizes)
        target()  # warm up outside the profile
        profiler = cProfile.Profile()
        profiler.runcall(target)
        print(f"\ncProfile of coflow's side of {options.profile!r} ({mode} size),"
              " top 15 by tottime:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
        return 0

    print(f"Mode:     {mode}, best of {sizes.repeats} alternating rounds;"
          " ratio = coflow / peer in the line's unit")
    started = perf_counter()
    rows: list[Row] = []
    for name in options.only or LINES:
        rows.extend(measure_line(name, sizes))
    print()
    print(format_table(rows))
    verdicts = [row.met for row in rows]
    print(f"\nTargets: {verdicts.count(True)} met, {verdicts.count(False)} missed,"
          f" {verdicts.count(None)} n/a. Took {perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
