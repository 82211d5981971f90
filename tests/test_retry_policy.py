"""RetryPolicy.delay: a pure function of the retry number, finite for any retry number."""

from __future__ import annotations

import itertools
import math
import random
import sys
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, RetriesExhausted, RetryPolicy, run

LONGEST = sys.float_info.max
HUGE_RETRY_NUMBERS = [1_024, 1_025, 1_100, 5_000, 10**6, 10**30, 10**400]


@pytest.mark.parametrize("backoff", ["constant", "linear", "exponential"])
def test_delays_of_the_first_retries_follow_the_backoff(backoff: str) -> None:
    policy = RetryPolicy(retries=5, backoff=backoff, base_delay=0.2)

    expected = {
        "constant": [0.2, 0.2, 0.2, 0.2, 0.2],
        "linear": [0.2, 0.4, 0.6000000000000001, 0.8, 1.0],
        "exponential": [0.2, 0.4, 0.8, 1.6, 3.2],
    }[backoff]
    assert [policy.delay(k) for k in range(1, 6)] == expected


@pytest.mark.parametrize("k", HUGE_RETRY_NUMBERS)
@pytest.mark.parametrize("backoff", ["linear", "exponential"])
def test_max_delay_caps_any_retry_number(backoff: str, k: int) -> None:
    policy = RetryPolicy(retries=5000, backoff=backoff, base_delay=0.2, max_delay=60)

    assert policy.delay(k) == 60.0


def test_the_reported_overflow_is_capped() -> None:
    policy = RetryPolicy(retries=5000, backoff="exponential", base_delay=0.2, max_delay=60)

    assert policy.delay(1100) == 60.0


@pytest.mark.parametrize("k", HUGE_RETRY_NUMBERS)
@pytest.mark.parametrize("backoff", ["linear", "exponential"])
def test_without_max_delay_a_delay_past_the_float_range_is_the_largest_float(
    backoff: str, k: int
) -> None:
    policy = RetryPolicy(retries=5000, backoff=backoff, base_delay=0.2)

    delay = policy.delay(k)

    assert math.isfinite(delay)
    if backoff == "linear":
        assert delay == (LONGEST if k > 10**308 else pytest.approx(0.2 * k))
    else:
        assert delay == (LONGEST if k > 1028 else math.ldexp(0.2, k - 1))


def test_uncapped_exponential_delays_grow_until_they_saturate() -> None:
    policy = RetryPolicy(retries=5000, backoff="exponential", base_delay=0.2)

    delays = [policy.delay(k) for k in range(1, 1200)]

    assert delays == sorted(delays)
    assert delays[1023] == 0.2 * 2.0**1023
    assert delays[-1] == LONGEST


@pytest.mark.parametrize("backoff", ["linear", "exponential"])
@pytest.mark.parametrize("max_delay", [None, 0.0, 60.0])
def test_a_zero_base_delay_stays_zero_for_any_retry_number(
    backoff: str, max_delay: float | None
) -> None:
    policy = RetryPolicy(retries=5000, backoff=backoff, base_delay=0.0, max_delay=max_delay)

    assert [policy.delay(k) for k in HUGE_RETRY_NUMBERS] == [0.0] * len(HUGE_RETRY_NUMBERS)


@pytest.mark.parametrize("max_delay", [None, 60.0])
@pytest.mark.parametrize("backoff", ["linear", "exponential"])
def test_jitter_draws_within_an_enormous_delay(backoff: str, max_delay: float | None) -> None:
    policy = RetryPolicy(
        retries=5000, backoff=backoff, base_delay=0.2, max_delay=max_delay, jitter=True
    )
    rng = random.Random(7)

    limit = LONGEST if max_delay is None else max_delay
    for k in HUGE_RETRY_NUMBERS:
        delay = policy.delay(k, rng)
        assert 0.0 <= delay <= limit
        assert math.isfinite(delay)


def test_a_callable_backoff_is_still_capped() -> None:
    policy = RetryPolicy(retries=3, backoff=lambda k: 10.0 * k, max_delay=15.0)

    assert [policy.delay(k) for k in (1, 2, 3)] == [10.0, 15.0, 15.0]


def test_a_run_retried_past_a_thousand_times_waits_at_most_max_delay() -> None:
    """The retry loop itself, on the virtual clock: no OverflowError at retry 1,025."""
    from coflow.backends.virtual import VirtualBackend

    backend = VirtualBackend()
    attempts: list[float] = []

    def push(state: Any) -> Any:
        attempts.append(backend.now())
        raise ConnectionError("offline")

    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        try:
            yield run(push, retries=1100, backoff="exponential", base_delay=0.2, max_delay=60)
        except RetriesExhausted as error:
            caught.append(error)

    coflow.start(body, backend=backend).result()

    assert len(attempts) == 1101
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert gaps[-1] == pytest.approx(60.0)
    assert max(gaps) == pytest.approx(60.0)
    assert isinstance(caught[0], RetriesExhausted)
