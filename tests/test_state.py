"""A flow's state: set_state / get_state, initial_state, and what notify receives."""

from __future__ import annotations

import dataclasses
import logging
import queue
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import FlowDone, FlowGenerator, FlowState, get_state, sequence, set_state, wait


def shapes(events: list[Any]) -> list[tuple[str, Any]]:
    """Notify events as ``(kind, state)`` pairs, easy to compare as a whole."""
    return [(type(event).__name__, event.state) for event in events]


def test_set_state_gives_the_new_state_and_get_state_the_current_one(coflow_backend: Any) -> None:
    seen: list[Any] = []

    @coflow.flow(initial_state={"count": 0})
    def counter() -> FlowGenerator:
        seen.append((yield get_state()))
        seen.append((yield set_state(lambda state: {**state, "count": state["count"] + 1})))
        seen.append((yield get_state()))
        seen.append((yield set_state(lambda state: {**state, "count": state["count"] * 5})))

    runner = coflow.start(counter, backend=coflow_backend)

    assert runner.result(timeout=5) == {"count": 5}
    assert seen == [{"count": 0}, {"count": 1}, {"count": 1}, {"count": 5}]
    assert runner.get_state() == {"count": 5}


def test_set_state_replaces_the_state_without_mutating_it(coflow_backend: Any) -> None:
    initial = {"count": 0}

    def body() -> FlowGenerator:
        yield set_state(lambda state: {**state, "count": 1})

    runner = coflow.start(body, initial_state=initial, backend=coflow_backend)

    assert runner.result(timeout=5) == {"count": 1}
    assert initial == {"count": 0}


def test_a_raising_set_state_function_raises_at_its_yield_and_keeps_the_state(
    coflow_backend: Any,
) -> None:
    caught: list[BaseException] = []

    def broken(state: Any) -> Any:
        raise KeyError("missing")

    def body() -> FlowGenerator:
        try:
            yield set_state(broken)
        except KeyError as error:
            caught.append(error)
        yield set_state(lambda state: state + 1)

    runner = coflow.start(body, initial_state=1, backend=coflow_backend)

    assert runner.result(timeout=5) == 2
    assert [type(error) for error in caught] == [KeyError]


def test_runner_get_state_is_a_snapshot_of_the_current_state(
    coflow_backend: Any, after: Callable[[float, Callable[[], Any]], coflow.Runner]
) -> None:
    snapshots: list[Any] = []

    def body() -> FlowGenerator:
        yield set_state(lambda state: "first")
        yield wait(0.2)
        yield set_state(lambda state: "second")

    runner = coflow.start(body, initial_state="initial", backend=coflow_backend)
    after(0.1, lambda: snapshots.append(runner.get_state()))

    assert runner.result(timeout=5) == "second"
    assert snapshots == ["first"]
    assert runner.get_state() == "second"


def test_initial_state_comes_from_the_flow(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={"dirty": False, "book_id": "b1"})
    def sync_book() -> FlowGenerator:
        state = yield get_state()
        yield set_state(lambda _: {**state, "seen": True})

    runner = coflow.start(sync_book, backend=coflow_backend)

    assert runner.result(timeout=5) == {"dirty": False, "book_id": "b1", "seen": True}


def test_start_initial_state_overrides_the_flows(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={"dirty": False, "book_id": None})
    def sync_book() -> FlowGenerator:
        state = yield get_state()
        yield set_state(lambda _: {**state, "seen": True})

    runner = coflow.start(
        sync_book, initial_state={"dirty": True, "book_id": "abc"}, backend=coflow_backend
    )

    assert runner.result(timeout=5) == {"dirty": True, "book_id": "abc", "seen": True}


def test_initial_state_none_given_to_start_is_a_state_not_a_default(coflow_backend: Any) -> None:
    @coflow.flow(initial_state="declared")
    def body() -> FlowGenerator:
        yield wait(0)

    runner = coflow.start(body, initial_state=None, backend=coflow_backend)

    assert runner.result(timeout=5) is None


def test_notify_receives_each_change_in_order_then_done(coflow_backend: Any) -> None:
    events: list[Any] = []

    @coflow.flow(initial_state=0)
    def three_changes() -> FlowGenerator:
        yield set_state(lambda state: 1)
        yield wait(0.05)
        yield set_state(lambda state: 2)
        yield set_state(lambda state: 3)

    runner = coflow.start(three_changes, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == 3
    assert shapes(events) == [("FlowState", 1), ("FlowState", 2), ("FlowState", 3), ("FlowDone", 3)]
    assert all(event.runner is runner for event in events)
    assert isinstance(events[0], FlowState)
    assert isinstance(events[-1], FlowDone)


def test_a_signal_that_changes_the_state_is_notified(
    coflow_backend: Any, after: Callable[[float, Callable[[], Any]], coflow.Runner]
) -> None:
    events: list[Any] = []

    def body() -> FlowGenerator:
        yield coflow.wait_until(lambda state: state == "signalled")
        yield set_state(lambda state: "finished")

    runner = coflow.start(body, initial_state="idle", notify=events.append, backend=coflow_backend)
    after(0.1, lambda: runner.signal(lambda state: "signalled"))

    assert runner.result(timeout=5) == "finished"
    assert shapes(events) == [
        ("FlowState", "signalled"),
        ("FlowState", "finished"),
        ("FlowDone", "finished"),
    ]


def test_a_state_equal_to_the_previous_is_not_notified(coflow_backend: Any) -> None:
    events: list[Any] = []

    @coflow.flow(initial_state={"n": 1})
    def unchanged_then_changed() -> FlowGenerator:
        yield set_state(lambda state: state)  # the same object
        yield set_state(lambda state: {"n": 1})  # an equal copy
        yield set_state(lambda state: {"n": 2})
        yield set_state(lambda state: {"n": 2})
        yield set_state(lambda state: state)

    runner = coflow.start(unchanged_then_changed, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == {"n": 2}
    assert shapes(events) == [("FlowState", {"n": 2}), ("FlowDone", {"n": 2})]


class NeverEqual:
    """A state that compares unequal even to itself, so only ``is`` can tell it is unchanged."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__


def test_the_same_state_object_is_not_notified_even_if_it_compares_unequal(
    coflow_backend: Any,
) -> None:
    events: list[Any] = []
    first, second = NeverEqual(), NeverEqual()

    def body() -> FlowGenerator:
        yield set_state(lambda state: state)
        yield set_state(lambda state: second)
        yield set_state(lambda state: state)

    runner = coflow.start(body, initial_state=first, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) is second
    assert [type(event).__name__ for event in events] == ["FlowState", "FlowDone"]
    assert events[0].state is second


def test_a_signal_that_leaves_the_state_equal_is_not_notified(
    coflow_backend: Any, after: Callable[[float, Callable[[], Any]], coflow.Runner]
) -> None:
    events: list[Any] = []

    def body() -> FlowGenerator:
        yield wait(0.2)
        yield set_state(lambda state: {**state, "done": True})

    runner = coflow.start(
        body, initial_state={"done": False}, notify=events.append, backend=coflow_backend
    )
    after(0.1, lambda: runner.signal(lambda state: dict(state)))

    assert runner.result(timeout=5) == {"done": True}
    assert shapes(events) == [("FlowState", {"done": True}), ("FlowDone", {"done": True})]


def two_changes() -> FlowGenerator:
    yield set_state(lambda state: state + 1)
    yield set_state(lambda state: state + 1)


def test_notify_may_be_a_queue(coflow_backend: Any) -> None:
    events: queue.Queue[Any] = queue.Queue()

    runner = coflow.start(two_changes, initial_state=0, notify=events, backend=coflow_backend)

    assert runner.result(timeout=5) == 2
    received = []
    while not events.empty():
        received.append(events.get_nowait())
    assert shapes(received) == [("FlowState", 1), ("FlowState", 2), ("FlowDone", 2)]


class Inbox:
    """Anything with ``put_nowait`` is a queue to notify; this one is not callable."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)


def test_notify_may_be_anything_with_put_nowait(coflow_backend: Any) -> None:
    inbox = Inbox()

    runner = coflow.start(two_changes, initial_state=0, notify=inbox, backend=coflow_backend)

    assert runner.result(timeout=5) == 2
    assert shapes(inbox.items) == [("FlowState", 1), ("FlowState", 2), ("FlowDone", 2)]


def test_a_raising_notify_is_logged_and_the_flow_still_finishes(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="coflow")
    received: list[Any] = []

    def broken_notify(event: Any) -> None:
        received.append(event)
        raise RuntimeError("notify is broken")

    runner = coflow.start(
        two_changes, initial_state=0, notify=broken_notify, backend=coflow_backend
    )

    assert runner.result(timeout=5) == 2
    assert runner.status == "done"
    # Every event is still delivered: one failure does not silence notify.
    assert shapes(received) == [("FlowState", 1), ("FlowState", 2), ("FlowDone", 2)]
    logged = [
        record
        for record in caplog.records
        if record.name.split(".")[0] == "coflow" and record.levelno >= logging.WARNING
    ]

    def mentions_the_error(record: logging.LogRecord) -> bool:
        raised = record.exc_info[1] if record.exc_info else None
        return "notify is broken" in record.getMessage() or "notify is broken" in str(raised)

    assert any(mentions_the_error(record) for record in logged), caplog.records


def test_caravela_sequence_notifies_in_order_and_finishes(coflow_backend: Any) -> None:
    events: list[Any] = []
    tree = coflow.flow(
        sequence(
            set_state(lambda state: {**state, "step": 1}),
            set_state(lambda state: {**state, "step": 2}),
            set_state(lambda state: {**state, "step": 3}),
        ),
        initial_state={"step": 0},
        name="three_steps",
    )

    runner = coflow.start(tree, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == {"step": 3}
    assert runner.status == "done"
    assert shapes(events) == [
        ("FlowState", {"step": 1}),
        ("FlowState", {"step": 2}),
        ("FlowState", {"step": 3}),
        ("FlowDone", {"step": 3}),
    ]


@dataclasses.dataclass(frozen=True)
class Book:
    title: str
    dirty: bool = False


def test_a_dataclass_state_works_with_set_state(coflow_backend: Any) -> None:
    events: list[Any] = []

    def edit() -> FlowGenerator:
        yield set_state(lambda book: dataclasses.replace(book, dirty=True))
        yield set_state(lambda book: dataclasses.replace(book, dirty=True))  # equal: not notified
        book = yield get_state()
        assert isinstance(book, Book)
        yield set_state(
            lambda book: dataclasses.replace(book, title=book.title.upper(), dirty=False)
        )

    runner = coflow.start(
        edit, initial_state=Book("dune"), notify=events.append, backend=coflow_backend
    )

    assert runner.result(timeout=5) == Book("DUNE", dirty=False)
    assert shapes(events) == [
        ("FlowState", Book("dune", dirty=True)),
        ("FlowState", Book("DUNE", dirty=False)),
        ("FlowDone", Book("DUNE", dirty=False)),
    ]
