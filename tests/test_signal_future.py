"""The future ``Runner.signal`` returns behaves as a ``concurrent.futures.Future`` in every use.

It builds its condition variable only when someone looks at it, so each test
looks at it in a different way, before or after the signal is applied.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import coflow
from coflow import wait_until
from coflow.backends.virtual import VirtualBackend


def _blocked_runner() -> tuple[VirtualBackend, coflow.Runner]:
    backend = VirtualBackend()

    def waits() -> Iterator[Any]:
        yield wait_until(lambda s: s >= 100)

    runner = coflow.start(waits, backend=backend, initial_state=0)
    backend.run_until_idle()
    return backend, runner


def _add(n: int) -> Any:
    return lambda s: s + n


def test_a_future_nobody_looked_at_holds_the_new_state() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(1))
    backend.run_until_idle()
    assert future.done()
    assert future.result(timeout=0) == 1


def test_result_waited_for_in_another_thread_is_woken() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(2))
    seen: list[Any] = []
    waiting = threading.Event()

    def reader() -> None:
        waiting.set()
        seen.append(future.result(timeout=5))

    thread = threading.Thread(target=reader)
    thread.start()
    assert waiting.wait(timeout=5)
    backend.run_until_idle()  # applied before or after the reader blocks: either way it wakes
    thread.join(timeout=5)
    assert seen == [2]


def test_done_callbacks_added_before_the_signal_is_applied_are_called() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(3))
    called: list[Any] = []
    future.add_done_callback(lambda done: called.append(done.result()))
    assert called == []
    backend.run_until_idle()
    assert called == [3]


def test_concurrent_futures_wait_sees_it_complete() -> None:
    backend, runner = _blocked_runner()
    futures = [runner.signal(_add(1)) for _ in range(3)]
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(concurrent.futures.wait(futures, timeout=5))
    )
    thread.start()
    backend.run_until_idle()
    thread.join(timeout=5)
    assert len(outcome[0].done) == 3
    assert sorted(f.result() for f in futures) == [1, 2, 3]


def test_a_sent_signal_cannot_be_cancelled_and_is_applied() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(1))
    assert not future.cancel()
    backend.run_until_idle()
    assert not future.cancelled()
    assert future.result(timeout=0) == 1
    assert not future.cancel()


def test_a_reader_that_looked_before_the_signal_was_applied_sees_the_outcome() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(5))
    assert not future.done()  # makes the condition variable before the outcome exists
    backend.run_until_idle()
    assert future.done()
    assert future.result(timeout=0) == 5


def test_a_raising_signal_puts_its_error_in_the_future_and_keeps_the_state() -> None:
    backend, runner = _blocked_runner()
    error = ValueError("bad signal")

    def fail(state: int) -> int:
        raise error

    future = runner.signal(fail)
    backend.run_until_idle()
    assert future.exception(timeout=0) is error
    assert runner.get_state() == 0


def test_readers_racing_the_scheduler_all_see_their_outcome() -> None:
    backend, runner = _blocked_runner()
    futures = [runner.signal(_add(1)) for _ in range(2_000)]
    seen: list[Any] = []

    def reader() -> None:
        seen.extend(future.result(timeout=5) for future in futures)

    thread = threading.Thread(target=reader)
    thread.start()
    backend.run_until_idle()  # settles while the reader looks, in whatever interleaving
    thread.join(timeout=10)
    assert seen == list(range(1, 2_001))
