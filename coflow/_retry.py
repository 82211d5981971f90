"""Retry policies: how many attempts, and the delay before each retry.

The delay is a pure function of the retry number ``k`` (1 for the first
retry), so schedules are tested without a clock, as tenacity does.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ._validate import check_choice, check_delay, check_optional_delay
from ._values import value

BACKOFFS = ("constant", "linear", "exponential")
Backoff = str | Callable[[int], float]


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
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        retry_on = tuple(retry_on)
        for kind in retry_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"{where}: retry_on must hold exception types, got {kind!r}")
        object.__setattr__(self, "retry_on", retry_on)

    @property
    def waits(self) -> bool:
        """Whether any retry waits at all (``False`` for a zero constant backoff)."""
        return bool(self.base_delay) or callable(self.backoff)

    def delay(self, k: int, rng: random.Random | None = None) -> float:
        """The delay before retry ``k`` (k = 1..retries); ``rng`` draws the jitter."""
        backoff = self.backoff
        if backoff == "constant":
            delay = self.base_delay
        elif backoff == "linear":
            delay = self.base_delay * k
        elif backoff == "exponential":
            delay = self.base_delay * 2 ** (k - 1)
        else:
            assert callable(backoff)
            delay = check_delay("run", f"backoff({k})", backoff(k))
        if self.max_delay is not None and delay > self.max_delay:
            delay = self.max_delay
        if self.jitter and rng is not None:
            delay = rng.uniform(0.0, delay)
        return delay
