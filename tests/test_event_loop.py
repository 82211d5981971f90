"""``EventLoopBackend.run_iteration``: the one driver of the threads and gevent loops.

Driven here by hand, on a clock the test sets, so each answer is exact: how
long the loop may wait, what runs in which iteration, and what a callback
that raises leaves behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from coflow.backends import EventLoopBackend, Latch


class HandDriven(EventLoopBackend):
    """An event loop whose clock the test moves, and nothing else."""

    name = "hand-driven"

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0

    def now(self) -> float:
        return self.clock

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.call_soon(callback, *args)

    def start_work(self, fn: Any, args: Any, done: Any) -> Any:
        raise NotImplementedError

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        raise NotImplementedError


def test_an_idle_loop_may_wait_for_ever() -> None:
    assert HandDriven().run_iteration() is None


def test_the_wait_is_the_time_until_the_earliest_timer() -> None:
    loop, ran = HandDriven(), []
    loop.call_later(5.0, ran.append, "late")
    loop.call_later(2.0, ran.append, "early")

    assert loop.run_iteration() == 2.0
    loop.clock = 1.5
    assert loop.run_iteration() == 0.5
    loop.clock = 2.5  # overslept: the timer is due, and then the next one is 2.5 s away
    assert loop.run_iteration() == 2.5
    assert ran == ["early"]


def test_a_cancelled_timer_is_no_reason_to_wake() -> None:
    loop = HandDriven()
    loop.call_later(1.0, print).cancel()

    assert loop.run_iteration() is None


def test_an_iteration_runs_what_was_ready_and_says_when_more_is() -> None:
    loop, ran = HandDriven(), []

    def first() -> None:
        ran.append("first")
        loop.call_soon(ran.append, "made ready by first")
        loop.call_later(0.0, ran.append, "zero-delay timer")

    loop.call_soon(first)
    loop.call_soon(ran.append, "second")

    assert loop.run_iteration() == 0.0
    assert ran == ["first", "second"]
    assert loop.run_iteration() is None  # the due timer joined the queue after the ready work
    assert ran == ["first", "second", "made ready by first", "zero-delay timer"]


def test_a_callback_that_raises_is_logged_and_the_iteration_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, ran = HandDriven(), []

    def broken() -> None:
        raise ValueError("broken callback")

    loop.call_soon(broken)
    loop.call_soon(ran.append, "after")
    with caplog.at_level(logging.ERROR, logger="coflow"):
        assert loop.run_iteration() is None

    assert ran == ["after"]
    [record] = caplog.records
    assert "the backend goes on" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_a_base_exception_reaches_the_driver_and_the_rest_runs_next_time() -> None:
    loop, ran = HandDriven(), []

    def exits() -> None:
        raise SystemExit(3)

    loop.call_soon(exits)
    loop.call_soon(ran.append, "after")
    with pytest.raises(SystemExit):
        loop.run_iteration()

    assert ran == []
    assert loop.run_iteration() is None
    assert ran == ["after"]
