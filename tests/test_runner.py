"""The ``Runner`` handle: status, signals, state snapshots, stop, results, events and notify.

Every test runs on each backend (the ``backend`` fixture) and is written so that
it holds on a real clock too: flows that must observe something from outside
block until a signal lets them go, and ``after`` places actions on the timeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from functools import partial
from typing import Any

import pytest
from conftest import run_async

import coflow
from coflow import (
    FlowDone,
    FlowError,
    FlowFailed,
    FlowGenerator,
    FlowState,
    FlowStopped,
    Ok,
    debounce,
    run,
    set_state,
    wait,
    wait_until,
)
from coflow.backends import backend_names
from coflow.testing import After, Timeline

# Module-level flows, so that their names are plain function names.


@coflow.flow(initial_state={"dirty": False, "book_id": None})
def sync_book() -> FlowGenerator:
    """The Caravela example, made finite: one sync, then done."""
    yield wait_until(lambda s: s["dirty"])
    yield debounce(0.05)
    yield set_state(lambda s: {**s, "dirty": "processing"})
    yield run(
        lambda s: Ok({**s, "dirty": False}), retries=3, backoff="exponential", base_delay=0.02
    )


@coflow.flow(initial_state=0, name="importer")
def named_flow() -> FlowGenerator:
    yield set_state(lambda s: s + 1)


@coflow.flow(initial_state=0)
def count_after_go() -> FlowGenerator:
    """Blocks until a signal raises the state to 1, so observers can attach first."""
    yield wait_until(lambda s: s >= 1)
    yield wait(0.01)
    yield set_state(lambda s: s + 1)


def go(state: int) -> int:
    return state + 1


def append_item(state: tuple[Any, ...], item: Any) -> tuple[Any, ...]:
    return (*state, item)


# Status


def test_status_is_running_until_the_flow_completes(coflow_backend: Any, after: After) -> None:
    @coflow.flow(initial_state="idle")
    def short() -> FlowGenerator:
        yield wait(0.1)

    runner = coflow.start(short, backend=coflow_backend)
    assert runner.status == "running"
    seen: list[str] = []
    after(0.05, lambda: seen.append(runner.status))
    assert runner.result(timeout=5) == "idle"
    assert seen == ["running"]
    assert runner.status == "done"


def test_status_is_failed_after_an_escaping_exception(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=0)
    def broken() -> FlowGenerator:
        yield wait(0.01)
        raise RuntimeError("boom")

    runner = coflow.start(broken, backend=coflow_backend)
    assert runner.status == "running"
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert runner.status == "failed"


def test_status_is_stopped_after_stop(coflow_backend: Any, after: After) -> None:
    @coflow.flow(initial_state=0)
    def forever() -> FlowGenerator:
        yield wait_until(lambda s: False)

    runner = coflow.start(forever, backend=coflow_backend)
    after(0.02, runner.stop)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"


# Signals


def test_signal_returns_a_future_of_the_new_state(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={"go": False, "n": 1})
    def waiter() -> FlowGenerator:
        yield wait_until(lambda s: s["go"])

    runner = coflow.start(waiter, backend=coflow_backend)
    future = runner.signal(lambda s: {**s, "go": True})
    assert isinstance(future, concurrent.futures.Future)
    assert runner.result(timeout=5) == {"go": True, "n": 1}
    assert future.result(timeout=0) == {"go": True, "n": 1}


def test_raising_signal_leaves_state_unchanged_and_future_holds_the_exception(
    coflow_backend: Any,
) -> None:
    @coflow.flow(initial_state={"go": False, "n": 1})
    def waiter() -> FlowGenerator:
        yield wait_until(lambda s: s["go"])

    events: list[Any] = []
    runner = coflow.start(waiter, backend=coflow_backend, notify=events.append)
    error = LookupError("no such book")

    def explode(state: Any) -> Any:
        raise error

    seen_by_next_signal: list[Any] = []

    def release(state: Any) -> Any:
        seen_by_next_signal.append(state)
        return {**state, "go": True}

    bad = runner.signal(explode)
    good = runner.signal(release)
    # The raising signal does not fail the flow.
    assert runner.result(timeout=5) == {"go": True, "n": 1}
    assert bad.exception(timeout=0) is error
    assert good.result(timeout=0) == {"go": True, "n": 1}
    assert seen_by_next_signal == [{"go": False, "n": 1}]
    assert [type(e) for e in events] == [FlowState, FlowDone]
    assert events[0].state == {"go": True, "n": 1}


def test_signals_from_many_threads_are_all_applied_each_thread_in_order(
    coflow_backend: Any,
) -> None:
    threads_count, per_thread = 4, 200
    total = threads_count * per_thread

    @coflow.flow(initial_state=())
    def collector() -> FlowGenerator:
        yield wait_until(lambda s: len(s) == total)

    runner = coflow.start(collector, backend=coflow_backend)
    futures: dict[int, list[concurrent.futures.Future[Any]]] = {t: [] for t in range(threads_count)}
    barrier = threading.Barrier(threads_count)

    def sender(thread_index: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            futures[thread_index].append(
                runner.signal(partial(append_item, item=(thread_index, i)))
            )

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    final = runner.result(timeout=5)

    assert len(final) == total
    assert sorted(final) == sorted((t, i) for t in range(threads_count) for i in range(per_thread))
    for t in range(threads_count):
        assert [i for thread_index, i in final if thread_index == t] == list(range(per_thread))
        # Each future holds the state right after its own signal.
        for i, future in enumerate(futures[t]):
            new_state = future.result(timeout=0)
            assert new_state[-1] == (t, i)
            assert final[: len(new_state)] == new_state


# State


def test_get_state_while_blocked_caravela_case(
    coflow_backend: Any, after: After, timeline: Timeline
) -> None:
    runner = coflow.start(
        sync_book, initial_state={"dirty": False, "book_id": "abc"}, backend=coflow_backend
    )
    snapshots: list[Any] = []

    def snapshot(label: str) -> None:
        timeline.log(label)
        snapshots.append(runner.get_state())

    after(0.05, lambda: snapshot("blocked in wait_until"))
    after(0.1, lambda: runner.signal(lambda s: {**s, "dirty": True}))
    after(0.12, lambda: snapshot("debouncing"))
    assert runner.result(timeout=5) == {"dirty": False, "book_id": "abc"}
    timeline.assert_matches([(0.05, "blocked in wait_until"), (0.12, "debouncing")])
    assert snapshots == [{"dirty": False, "book_id": "abc"}, {"dirty": True, "book_id": "abc"}]
    assert runner.get_state() == {"dirty": False, "book_id": "abc"}


def test_initial_state_overrides_the_declared_one_caravela_case(coflow_backend: Any) -> None:
    pushed: list[Any] = []

    def push_book(state: Any) -> Ok[Any]:
        pushed.append(state["book_id"])
        return Ok({**state, "dirty": False})

    @coflow.flow(initial_state={"dirty": False, "book_id": None})
    def sync_once() -> FlowGenerator:
        yield wait_until(lambda s: s["dirty"])
        yield debounce(0.05)
        yield set_state(lambda s: {**s, "dirty": "processing"})
        yield run(push_book, retries=3, backoff="exponential", base_delay=0.02)

    runner = coflow.start(
        sync_once, initial_state={"dirty": True, "book_id": "abc"}, backend=coflow_backend
    )
    # Declared state would block forever in wait_until; the override lets it sync at once.
    assert runner.result(timeout=5) == {"dirty": False, "book_id": "abc"}
    assert pushed == ["abc"]


def test_none_is_a_legal_initial_state_override(coflow_backend: Any) -> None:
    @coflow.flow(initial_state="declared")
    def reader() -> FlowGenerator:
        state = yield coflow.get_state()
        yield set_state(lambda s: ("seen", state))

    runner = coflow.start(reader, initial_state=None, backend=coflow_backend)
    assert runner.result(timeout=5) == ("seen", None)


# Stop


def test_stop_after_completion_changes_nothing(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=0)
    def quick() -> FlowGenerator:
        yield set_state(lambda s: s + 1)

    runner = coflow.start(quick, backend=coflow_backend)
    assert runner.result(timeout=5) == 1
    runner.stop()
    assert runner.status == "done"
    assert runner.result(timeout=5) == 1


# Results


def test_result_returns_the_final_state(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={"n": 0})
    def counting() -> FlowGenerator:
        for _ in range(3):
            yield wait(0.01)
            yield set_state(lambda s: {"n": s["n"] + 1})

    runner = coflow.start(counting, backend=coflow_backend)
    assert runner.result(timeout=5) == {"n": 3}
    # Asking again gives the same answer.
    assert runner.result(timeout=5) == {"n": 3}


def test_result_raises_flow_failed_with_the_reason_as_cause(coflow_backend: Any) -> None:
    reason = RuntimeError("disk full")

    def write(state: Any) -> Any:
        raise reason

    @coflow.flow(initial_state=0)
    def writer() -> FlowGenerator:
        yield wait(0.01)
        yield run(write)

    runner = coflow.start(writer, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    assert excinfo.value.__cause__ is reason
    with pytest.raises(FlowFailed) as again:
        runner.result(timeout=5)
    assert again.value.__cause__ is reason


def test_result_raises_flow_stopped_for_a_stopped_flow(coflow_backend: Any, after: After) -> None:
    @coflow.flow(initial_state=0)
    def forever() -> FlowGenerator:
        while True:
            yield wait(0.01)

    runner = coflow.start(forever, backend=coflow_backend)
    after(0.035, runner.stop)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)


def test_an_await_abandoned_with_its_loop_does_not_disturb_the_flow(
    coflow_backend: Any, is_virtual: bool
) -> None:
    if is_virtual:
        pytest.skip("awaiting on the virtual clock drives the flow to its end at once")

    @coflow.flow(initial_state=0)
    def slow() -> FlowGenerator:
        yield wait(0.2)
        yield set_state(lambda s: s + 1)

    runner = coflow.start(slow, backend=coflow_backend)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(runner.wait(), 0.01)

    run_async(coflow_backend, main)  # its loop is closed when the flow ends
    assert runner.result(timeout=5) == 1


# Events and notify


def test_events_taken_right_after_start_on_the_virtual_clock_include_the_first_steps() -> None:
    # Nothing runs between calls on the virtual clock: the stream is there before the flow moves.
    runner = coflow.start(set_state(lambda s: s + 1), initial_state=0, backend="virtual")
    received = list(runner.events())
    assert [(type(e), e.state) for e in received] == [(FlowState, 1), (FlowDone, 1)]


def test_events_as_a_sync_iterator(coflow_backend: Any) -> None:
    runner = coflow.start(count_after_go, backend=coflow_backend)
    events = runner.events()
    runner.signal(go)
    assert runner.result(timeout=5) == 2
    received: list[Any] = list(events)  # ends after the final event
    assert [type(e) for e in received] == [FlowState, FlowState, FlowDone]
    assert [e.state for e in received] == [1, 2, 2]
    assert all(e.runner is runner for e in received)


def test_events_as_an_async_iterator(coflow_backend: Any) -> None:
    async def main() -> tuple[Any, list[Any], coflow.Runner]:
        runner = coflow.start(count_after_go, backend=coflow_backend)
        events = runner.events()
        runner.signal(go)

        async def collect() -> list[Any]:
            return [event async for event in events]

        collecting = asyncio.ensure_future(collect())
        final = await runner.wait()
        return final, await asyncio.wait_for(collecting, 5), runner

    final, received, runner = run_async(coflow_backend, main)
    assert final == 2
    assert [type(e) for e in received] == [FlowState, FlowState, FlowDone]
    assert [e.state for e in received] == [1, 2, 2]
    assert all(e.runner is runner for e in received)


def test_events_end_with_flow_error_for_a_failing_flow(coflow_backend: Any) -> None:
    reason = RuntimeError("crash")

    @coflow.flow(initial_state=0)
    def crashing() -> FlowGenerator:
        yield wait_until(lambda s: s >= 1)
        raise reason

    runner = coflow.start(crashing, backend=coflow_backend)
    events = runner.events()
    runner.signal(go)
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    received: list[Any] = list(events)
    assert [type(e) for e in received] == [FlowState, FlowError]
    assert received[-1].reason is reason


def test_notify_callable_gets_changes_in_order_and_skips_equal_states(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={"n": 0})
    def changing() -> FlowGenerator:
        yield set_state(lambda s: {"n": 1})
        yield set_state(lambda s: s)  # same object: no event
        yield set_state(lambda s: dict(s))  # equal value: no event
        yield wait(0.01)
        yield set_state(lambda s: {"n": 2})

    events: list[Any] = []
    runner = coflow.start(changing, backend=coflow_backend, notify=events.append)
    assert runner.result(timeout=5) == {"n": 2}
    assert [type(e) for e in events] == [FlowState, FlowState, FlowDone]
    assert [e.state for e in events] == [{"n": 1}, {"n": 2}, {"n": 2}]
    assert all(e.runner is runner for e in events)


def test_notify_queue_gets_events_in_order(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=0)
    def counting() -> FlowGenerator:
        yield set_state(lambda s: s + 1)
        yield wait(0.01)
        yield set_state(lambda s: s + 1)

    inbox: queue.Queue[Any] = queue.Queue()
    runner = coflow.start(counting, backend=coflow_backend, notify=inbox)
    assert runner.result(timeout=5) == 2
    received = []
    while True:
        try:
            received.append(inbox.get_nowait())
        except queue.Empty:
            break
    assert [type(e) for e in received] == [FlowState, FlowState, FlowDone]
    assert [e.state for e in received] == [1, 2, 2]
    assert all(e.runner is runner for e in received)


def test_notify_gets_flow_error_with_the_reason(coflow_backend: Any) -> None:
    reason = KeyError("book")

    @coflow.flow(initial_state=0)
    def crashing() -> FlowGenerator:
        yield set_state(lambda s: 1)
        raise reason

    events: list[Any] = []
    runner = coflow.start(crashing, backend=coflow_backend, notify=events.append)
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert [type(e) for e in events] == [FlowState, FlowError]
    assert events[-1].reason is reason
    assert events[-1].runner is runner


def test_raising_notify_does_not_disturb_the_flow(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Any] = []

    def bad_listener(event: Any) -> None:
        calls.append(event)
        raise RuntimeError("listener broke")

    runner = coflow.start(named_flow, backend=coflow_backend, notify=bad_listener)
    assert runner.result(timeout=5) == 1
    assert [type(e) for e in calls] == [FlowState, FlowDone]
    assert runner.status == "done"
    assert any(
        "listener broke" in record.getMessage()
        or (record.exc_info is not None and "listener broke" in str(record.exc_info[1]))
        for record in caplog.records
    )


# Identity


def test_runner_ids_are_unique(coflow_backend: Any) -> None:
    runners = [coflow.start(named_flow, backend=coflow_backend) for _ in range(5)]
    for runner in runners:
        runner.result(timeout=5)
    assert len({runner.id for runner in runners}) == 5


def test_runner_name_is_given_or_the_flows_name(coflow_backend: Any) -> None:
    given = coflow.start(named_flow, backend=coflow_backend, name="nightly import")
    declared = coflow.start(named_flow, backend=coflow_backend)
    from_function = coflow.start(
        sync_book, initial_state={"dirty": True, "book_id": 1}, backend=coflow_backend
    )
    for runner in (given, declared, from_function):
        runner.result(timeout=5)
    assert given.name == "nightly import"
    assert declared.name == "importer"
    assert from_function.name == "sync_book"


def test_runner_flow_is_the_flow_started(coflow_backend: Any) -> None:
    runner = coflow.start(named_flow, backend=coflow_backend)
    runner.result(timeout=5)
    assert runner.flow is named_flow
    assert isinstance(runner.flow, coflow.Flow)


# Backend selection


def test_start_with_backend_name_virtual() -> None:
    @coflow.flow(initial_state=0)
    def slow() -> FlowGenerator:
        yield wait(3600)  # virtual time: no real waiting
        yield set_state(lambda s: s + 1)

    runner = coflow.start(slow, backend="virtual")
    assert runner.result() == 1
    assert runner.status == "done"


def test_unknown_backend_name_is_a_value_error_listing_valid_names() -> None:
    with pytest.raises(ValueError) as excinfo:
        coflow.start(named_flow, backend="tornado")
    message = str(excinfo.value)
    assert "tornado" in message
    for valid in backend_names():
        assert repr(valid) in message
