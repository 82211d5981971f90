"""Schedule exploration: run a scenario under many drawn schedules, report the first that fails.

A scenario is a test function of a backend: it starts flows on it, drives
the clock, and asserts.  ``explore`` runs it on ``runs`` fresh exploring
clocks (``coflow.backends.exploring``), seeded ``seed``, ``seed + 1``, ...:
on each, every piece of work lasts a drawn duration, so concurrent work ends
in a drawn order and signals land before, during or after it.  The first run
whose scenario raises is reported with its seed and the durations drawn;
``explore(scenario, seed=that_seed, runs=1)`` replays it exactly.

The idea is that of loom, shuttle, Coyote and FoundationDB's simulation:
the bug that needs an unlucky interleaving is found by drawing many, and kept
by its seed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class ScheduleFailed(AssertionError):
    """A scenario failed under a drawn schedule; ``seed`` replays it, ``schedule`` shows it."""

    def __init__(self, message: str, seed: int, run: int, schedule: list[str]) -> None:
        super().__init__(message)
        self.seed = seed
        self.run = run
        self.schedule = schedule


def explore(
    scenario: Callable[[Any], Any],
    *,
    runs: int = 200,
    seed: int = 0,
    work: tuple[float, float] = (0.0, 1.0),
) -> int:
    """Run ``scenario(backend)`` under ``runs`` drawn schedules; the number run when none fails.

    ``work`` bounds how long each piece of work may last, in seconds.  Raises
    ``ScheduleFailed`` (an ``AssertionError``) for the first schedule under which
    the scenario raises, naming its seed; its ``__cause__`` is what the scenario raised.
    """
    if not callable(scenario):
        raise TypeError(f"explore: scenario must be a function of a backend, got {scenario!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"explore: runs must be an int >= 1, got {runs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"explore: seed must be an int, got {seed!r}")
    exploring = importlib.import_module("coflow.backends.exploring")
    work = exploring.check_durations(work)
    for run in range(runs):
        run_seed = seed + run
        backend = exploring.ExploringBackend(run_seed, work)
        try:
            scenario(backend)
        except Exception as error:
            raise ScheduleFailed(
                _report(scenario, run, runs, run_seed, error, backend.schedule),
                run_seed,
                run,
                backend.schedule,
            ) from error
        finally:
            backend.close()
    return runs


def _report(
    scenario: Callable[..., Any],
    run: int,
    runs: int,
    seed: int,
    error: Exception,
    schedule: list[str],
) -> str:
    name = getattr(scenario, "__qualname__", repr(scenario))
    drawn = "\n".join(f"  {line}" for line in schedule) or "  (no work was started)"
    return (
        f"{name} failed under schedule {run + 1} of {runs} (seed {seed}): {error!r}\n"
        f"replay it with explore({name}, seed={seed}, runs=1)\n"
        f"the work, in the order it started:\n{drawn}"
    )
