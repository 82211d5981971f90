"""``runner.events()``: an ``EventStream`` ends with its runner and leaves it once closed.

A stream is a subscription: from ``events()`` until the runner's final event,
or until it is closed (``close()``, ``with``, ``async with``, a cancelled
``async for``, garbage collection), after which the runner keeps nothing of it.
Every test runs on each backend where it applies.  Flows wait for the value
100, which no test sends, so a flow lives until the test has watched it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from conftest import run_async

import coflow
from coflow import (
    FlowDone,
    FlowError,
    FlowGenerator,
    FlowRestarted,
    FlowState,
    FlowStopped,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend


def waits_for_100() -> FlowGenerator:
    yield wait_until(lambda s: s >= 100)


def add(n: int) -> Callable[[int], int]:
    return lambda s: s + n


def applied(backend: Any, future: concurrent.futures.Future[Any]) -> Any:
    """The signal's new state once its runner applied it (on the virtual clock, run it)."""
    if isinstance(backend, VirtualBackend):
        backend.run_until_idle()
    return future.result(timeout=5)


def start_waiting(backend: Any, initial_state: Any = 0) -> coflow.Runner:
    return coflow.start(waits_for_100, initial_state=initial_state, backend=backend)


def stop(runner: coflow.Runner) -> None:
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)


def states(events: list[Any]) -> list[tuple[str, Any]]:
    names = {FlowState: "state", FlowDone: "done", FlowError: "error", FlowRestarted: "restarted"}
    return [(names[type(event)], getattr(event, "state", None)) for event in events]


# Ending


def test_a_stream_ends_after_the_final_event(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events()
    applied(coflow_backend, runner.signal(add(1)))
    applied(coflow_backend, runner.signal(add(99)))
    assert runner.result(timeout=5) == 100
    assert states(list(stream)) == [("state", 1), ("state", 100), ("done", 100)]
    assert list(stream) == []  # and stays ended


def test_a_stopped_runners_stream_ends_with_no_event_after_the_stop(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events()
    applied(coflow_backend, runner.signal(add(1)))
    stop(runner)
    assert states(list(stream)) == [("state", 1)]


def test_a_stream_of_a_finished_runner_is_empty(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend, initial_state=100)
    assert runner.result(timeout=5) == 100
    stream = runner.events()
    assert list(stream) == []
    assert not stream.closed  # ended, not closed by its reader


# Closing


def test_close_drops_what_is_buffered_and_receives_nothing_more(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events()
    applied(coflow_backend, runner.signal(add(1)))
    stream.close()
    assert stream.closed
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stream.close()  # idempotent
    stop(runner)
    assert list(stream) == []


def test_a_closed_or_dropped_stream_leaves_nothing_on_its_runner(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    closed = runner.events()
    closed.close()
    with runner.events():
        pass
    runner.events()  # dropped at once
    broken_off = runner.events()
    runner.signal(add(1))
    for _ in broken_off:
        break
    del broken_off
    gc.collect()
    assert runner._sinks == ()  # the one look inside: the runner's notify targets
    stop(runner)


def test_closing_one_stream_leaves_the_others_and_notify(coflow_backend: Any) -> None:
    notified: list[Any] = []
    runner = coflow.start(
        waits_for_100, initial_state=0, backend=coflow_backend, notify=notified.append
    )
    closed, kept = runner.events(), runner.events()
    closed.close()
    applied(coflow_backend, runner.signal(add(100)))
    assert runner.result(timeout=5) == 100
    assert states(list(kept)) == [("state", 100), ("done", 100)]
    assert states(notified) == [("state", 100), ("done", 100)]
    assert list(closed) == []


def test_with_closes_the_stream_on_leaving(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    with runner.events() as stream:
        runner.signal(add(1))
        assert states([next(stream)]) == [("state", 1)]
        applied(coflow_backend, runner.signal(add(1)))  # buffered, then dropped on leaving
    assert stream.closed
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stop(runner)


def test_async_with_closes_the_stream_on_leaving(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)

    async def main() -> tuple[coflow.EventStream, list[Any]]:
        async with runner.events() as stream:
            runner.signal(add(1))
            first = await anext(stream)
        return stream, [first]

    stream, received = run_async(coflow_backend, main)
    assert states(received) == [("state", 1)]
    assert stream.closed
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stop(runner)


def test_aclose_closes_the_stream(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events()
    run_async(coflow_backend, stream.aclose)
    assert stream.closed
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stop(runner)


def test_breaking_out_of_for_then_closing(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events()
    for _ in range(3):
        runner.signal(add(1))
    for event in stream:
        if event.state == 1:
            break
    stream.close()
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stop(runner)


def test_close_from_another_thread_ends_a_reader_waiting_in_for(coflow_backend: Any) -> None:
    if isinstance(coflow_backend, VirtualBackend):
        pytest.skip("a reader on the virtual clock drives it: it never waits for another thread")
    runner = start_waiting(coflow_backend)
    stream = runner.events()

    def read_then_close() -> list[Any]:
        return list(stream)  # woken by the close below, whether it waited already or not

    if (
        coflow_backend.name == "gevent"
    ):  # waited for in the hub's own pool, so the hub keeps running
        from gevent import get_hub

        reading: Any = get_hub().threadpool.spawn(read_then_close)
        stream.close()
        received = reading.get(timeout=5)
    else:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reader = pool.submit(read_then_close)
            stream.close()
            received = reader.result(timeout=5)
    assert received == []
    stop(runner)


def test_a_cancelled_async_for_closes_its_stream(coflow_backend: Any) -> None:
    if isinstance(coflow_backend, VirtualBackend):
        pytest.skip(
            "awaiting on the virtual clock drives it: the reader never waits, or is cancelled"
        )
    runner = start_waiting(coflow_backend)
    stream = runner.events()

    async def main() -> None:
        async def consume() -> None:
            async for _ in stream:
                pass

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0)  # the consumer runs until it waits for an event
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

    run_async(coflow_backend, main)
    assert stream.closed
    applied(coflow_backend, runner.signal(add(1)))
    assert list(stream) == []
    stop(runner)


# Garbage collection


class Box:
    """A state that can be weakly referenced, to see whether anything still holds it."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_a_dropped_stream_is_collected_and_its_events_with_it(coflow_backend: Any) -> None:
    runner = coflow.start(
        wait_until(lambda s: s.n >= 100), initial_state=Box(0), backend=coflow_backend
    )
    stream = runner.events()
    buffered_state = weakref.ref(applied(coflow_backend, runner.signal(lambda s: Box(1))))
    applied(
        coflow_backend, runner.signal(lambda s: Box(2))
    )  # Box(1) is now held only by the stream
    assert buffered_state() is not None
    dropped_stream = weakref.ref(stream)
    del stream
    gc.collect()
    assert dropped_stream() is None
    assert buffered_state() is None
    applied(coflow_backend, runner.signal(lambda s: Box(3)))  # the runner goes on, feeding nobody
    stop(runner)


def test_a_stream_left_in_an_abandoned_async_generator_is_collected(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    dropped: list[weakref.ref[coflow.EventStream]] = []

    async def follow() -> Any:
        stream = runner.events()
        dropped.append(weakref.ref(stream))
        runner.signal(add(1))  # once the stream is there: a state before it would not be seen
        async for event in stream:
            yield event

    async def main() -> Any:
        follower = follow()
        first = await anext(follower)
        await follower.aclose()  # what a web framework does when its client disconnects
        return first

    first = run_async(coflow_backend, main)
    assert states([first]) == [("state", 1)]
    gc.collect()
    assert dropped[0]() is None
    stop(runner)


# maxsize


def test_maxsize_drops_the_oldest_state_events_and_keeps_the_final_one(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events(maxsize=2)
    assert stream.maxsize == 2
    for _ in range(4):
        applied(coflow_backend, runner.signal(add(1)))
    applied(coflow_backend, runner.signal(add(96)))
    assert runner.result(timeout=5) == 100
    assert stream.dropped == 3
    assert states(list(stream)) == [("state", 4), ("state", 100), ("done", 100)]


def test_maxsize_keeps_a_flow_error(coflow_backend: Any) -> None:
    reason = RuntimeError("crash")

    def crashing() -> FlowGenerator:
        yield wait_until(lambda s: s >= 3)
        raise reason

    runner = coflow.start(crashing, initial_state=0, backend=coflow_backend)
    stream = runner.events(maxsize=1)
    for _ in range(3):
        applied(coflow_backend, runner.signal(add(1)))
    with pytest.raises(coflow.FlowFailed):
        runner.result(timeout=5)
    received = list(stream)
    assert states(received) == [("state", 3), ("error", None)]
    assert received[-1].reason is reason
    assert stream.dropped == 2


def test_a_reader_keeping_up_drops_nothing(coflow_backend: Any) -> None:
    runner = start_waiting(coflow_backend)
    stream = runner.events(maxsize=1)
    for n in range(1, 4):
        runner.signal(add(1))
        assert next(stream).state == n
    assert stream.dropped == 0
    stop(runner)


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True, "2"])
def test_maxsize_must_be_a_positive_int(maxsize: Any) -> None:
    runner = start_waiting("virtual")
    with pytest.raises(ValueError, match="maxsize must be None or an int >= 1"):
        runner.events(maxsize=maxsize)
    stop(runner)
