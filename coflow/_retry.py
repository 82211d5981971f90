"""Retry policies: how many attempts, and the delay before each retry.

The delay is a pure function of the retry number ``k`` (1 for the first
retry), so schedules are tested without a clock, as tenacity does.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from typing import Any

from ._validate import check_choice, check_delay, check_optional_delay
from ._values import value

BACKOFFS = ("constant", "linear", "exponential")
Backoff = str | Callable[[int], float]

#: An uncapped delay too large for a float saturates here: finite, as every delay is.
LONGEST_DELAY = sys.float_info.max


@value
class RetryPolicy:
    """The retry options of ``run`` as one reusable, comparable value."""

    retries: int = 0
    backoff: Backoff = "constant"
    base_delay: float = 0.0
    max_delay: float | None = None
    jitter: bool = False
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        where = "RetryPolicy"
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"{where}: retries must be an int, got {self.retries!r}")
        if self.retries < 0:
            raise ValueError(f"{where}: retries must be >= 0, got {self.retries!r}")
        if not callable(self.backoff):
            check_choice(where, "backoff", self.backoff, BACKOFFS)
        object.__setattr__(self, "base_delay", check_delay(where, "base_delay", self.base_delay))
        object.__setattr__(
            self, "max_delay", check_optional_delay(where, "max_delay", self.max_delay)
        )
        object.__setattr__(self, "retry_on", _exception_types(where, self.retry_on))

    @property
    def waits(self) -> bool:
        """Whether any retry waits at all (``False`` for a zero constant backoff)."""
        return bool(self.base_delay) or callable(self.backoff)

    def delay(self, k: int, rng: random.Random | None = None) -> float:
        """The delay before retry ``k`` (k = 1..retries); ``rng`` draws the jitter.

        Finite for any ``k``: ``max_delay`` caps it, and without one a delay
        too large for a float is ``LONGEST_DELAY`` (the largest float).
        """
        backoff = self.backoff
        if backoff == "constant":
            delay = self.base_delay
        elif backoff == "linear":
            try:
                delay = self.base_delay * k  # inf past the float range
            except OverflowError:  # k itself is too large for a float
                delay = math.inf if self.base_delay else 0.0
        elif backoff == "exponential":
            try:  # ldexp scales by 2 ** (k - 1) without building that integer
                delay = math.ldexp(self.base_delay, k - 1)
            except OverflowError:
                delay = math.inf
        else:
            assert callable(backoff)
            delay = check_delay("run", f"backoff({k})", backoff(k))
        if self.max_delay is not None:
            if delay > self.max_delay:
                delay = self.max_delay
        elif delay > LONGEST_DELAY:
            delay = LONGEST_DELAY
        if self.jitter and rng is not None:
            delay = rng.uniform(0.0, delay)
        return delay


def _is_exception_type(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseException)


def _exception_types(where: str, retry_on: Any) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a tuple of exception types, as ``except`` takes them; else ``TypeError``.

    A list is taken as a tuple; a string, an exception instance or anything
    else is refused here, where ``except`` would only fail once an attempt fails.
    """
    if _is_exception_type(retry_on):
        return (retry_on,)
    if isinstance(retry_on, (tuple, list)) and all(_is_exception_type(kind) for kind in retry_on):
        return tuple(retry_on)
    raise TypeError(
        f"{where}: retry_on must be an exception type or a tuple of them, got {retry_on!r}"
    )
