"""``ExploringBackend``: a virtual clock that draws one legal schedule per seed.

``coflow.testing.explore`` runs a test scenario on many of these.  Each
piece of work (plain or async, in ``run``, ``parallel`` or ``race``) lasts a
duration drawn from the backend's own seeded generator, so concurrent work
completes in a drawn order and signals land before, during or after it.
Everything else is the virtual clock: the same seed draws the same schedule,
so a failing run replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from coflow._lasting import LastingWork
from coflow._step import describe
from coflow._validate import check_delay

from .virtual import VirtualBackend


class ExploringBackend(VirtualBackend):
    """A ``VirtualBackend`` on which each piece of work lasts a drawn ``work`` duration.

    ``work`` is the ``(shortest, longest)`` a piece of work may last, in
    seconds; ``schedule`` lists what was drawn, in order, to show a failing run.
    """

    def __init__(self, seed: int, work: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(seed=seed)
        self.work = check_durations(work)
        self._draws = random.Random(f"schedule {seed}")  # apart from the flows' own jitter
        self.schedule: list[str] = []

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> Any:
        seconds = self._draws.uniform(*self.work)
        self.schedule.append(f"at {self.now():g} s, {describe(fn)} lasts {seconds:.3f} s")
        return LastingWork(self, seconds, super().start_work, fn, args, done)


def check_durations(work: Any) -> tuple[float, float]:
    """``work`` as a checked ``(shortest, longest)`` pair of durations, in seconds."""
    if not isinstance(work, tuple) or len(work) != 2:
        raise TypeError(
            f"explore: work must be a (shortest, longest) pair of seconds, got {work!r}"
        )
    shortest = check_delay("explore", "work's shortest", work[0])
    longest = check_delay("explore", "work's longest", work[1])
    if shortest > longest:
        raise ValueError(
            f"explore: work's shortest {shortest!r} is longer than its longest {longest!r}"
        )
    return shortest, longest
