"""Retry bookkeeping: a ``run`` step with retries whose function fails every attempt but the last.

One flow does R ``run(fn, retries=A-1, base_delay=0)`` steps on the virtual
backend; ``fn`` raises on the first A-1 attempts of each run and succeeds on
the last.  The figure is wall time per attempt, so it includes raising the
error (as any retry library must) and the zero-delay wait between attempts.

The peer is tenacity (``Retrying`` with ``stop_after_attempt(A)`` and
``wait_none()``) calling the same function, if tenacity is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import coflow
from coflow import run
from coflow.backends.virtual import VirtualBackend

from . import Row, at_most, best_of


class TransientError(Exception):
    pass


class Flaky:
    """Fails ``attempts - 1`` times in a row, then succeeds once; then starts over."""

    __slots__ = ("attempts", "calls", "failures_left")

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.failures_left = attempts - 1
        self.calls = 0

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.failures_left:
            self.failures_left -= 1
            raise TransientError("not yet")
        self.failures_left = self.attempts - 1


def run_coflow(runs: int, attempts: int) -> float:
    flaky = Flaky(attempts)

    def retrying() -> Generator[Any, Any, None]:
        for _ in range(runs):
            yield run(flaky, retries=attempts - 1, base_delay=0.0)

    backend = VirtualBackend(max_steps=4 * runs * attempts + 100)
    started = perf_counter()
    coflow.start(retrying, initial_state=None, backend=backend).result()
    elapsed = perf_counter() - started
    if flaky.calls != runs * attempts:
        raise RuntimeError(f"retry: coflow made {flaky.calls} attempts, expected {runs * attempts}")
    return elapsed


def tenacity_available() -> bool:
    try:
        import tenacity  # noqa: F401
    except ImportError:
        return False
    return True


def _no_sleep(seconds: float) -> None:
    """tenacity's default ``time.sleep(0)`` is a system call that would dwarf the bookkeeping."""


def run_tenacity(runs: int, attempts: int) -> float:
    import tenacity

    flaky = Flaky(attempts)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_none(),
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=True,
        sleep=_no_sleep,  # coflow's virtual clock does not sleep either: bookkeeping only
    )
    started = perf_counter()
    for _ in range(runs):
        retrying(flaky)
    elapsed = perf_counter() - started
    if flaky.calls != runs * attempts:
        raise RuntimeError(
            f"retry: tenacity made {flaky.calls} attempts, expected {runs * attempts}"
        )
    return elapsed


def measure(runs: int, attempts: int, repeats: int) -> list[Row]:
    contenders = {"coflow": lambda: run_coflow(runs, attempts)}
    have_tenacity = tenacity_available()
    if have_tenacity:
        contenders["tenacity"] = lambda: run_tenacity(runs, attempts)
    best = best_of(repeats, contenders)
    total = runs * attempts
    per_attempt = {name: seconds / total * 1e6 for name, seconds in best.items()}
    line = f"retry: {runs:,} runs x {attempts} attempts, base_delay=0"
    return [
        Row(line, "µs/attempt", per_attempt["coflow"],
            "tenacity" if have_tenacity else "tenacity (not installed)",
            per_attempt.get("tenacity"), at_most(5.0, "<= 5 µs", on="coflow")),
    ]


def profile_target(runs: int, attempts: int) -> Callable[[], float]:
    return lambda: run_coflow(runs, attempts)
