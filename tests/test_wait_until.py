"""wait_until(pred): block until the state satisfies pred, re-checked on changes, never polled."""

from __future__ import annotations

from typing import Any

import pytest

import coflow
from coflow import FlowFailed, FlowGenerator, FlowTimeout, parallel, set_state, wait, wait_until
from coflow.testing import After


def is_dirty(state: Any) -> bool:
    return bool(state["dirty"])


def mark_dirty(state: Any) -> Any:
    return {**state, "dirty": True}


def test_wait_until_continues_at_once_when_the_predicate_already_holds(
    coflow_backend: Any, timeline: Any
) -> None:
    results: list[Any] = []

    def body() -> FlowGenerator:
        timeline.log("before")
        results.append((yield wait_until(is_dirty)))
        timeline.log("after")

    runner = coflow.start(body, initial_state={"dirty": True}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"dirty": True}
    assert results == [{"dirty": True}]
    timeline.assert_matches([(0.0, "before"), (0.0, "after")])


def test_caravela_wait_until_blocks_until_a_signal(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    @coflow.flow(initial_state={"dirty": False, "edits": 0})
    def sync_book() -> FlowGenerator:
        yield wait_until(is_dirty)
        timeline.log("unblocked")

    runner = coflow.start(sync_book, backend=coflow_backend)
    # A signal that leaves the predicate false does not unblock it.
    after(0.1, lambda: runner.signal(lambda state: {**state, "edits": 1}))
    after(0.2, lambda: runner.signal(mark_dirty))

    assert runner.result(timeout=5) == {"dirty": True, "edits": 1}
    timeline.assert_matches([(0.2, "unblocked")])


def test_wait_until_is_rechecked_after_a_state_change_by_a_parallel_branch(
    coflow_backend: Any, timeline: Any
) -> None:
    def waiter() -> FlowGenerator:
        yield wait_until(is_dirty)
        timeline.log("waiter unblocked")

    def changer() -> FlowGenerator:
        yield wait(0.1)
        timeline.log("changer sets dirty")
        yield set_state(mark_dirty)

    def body() -> FlowGenerator:
        yield parallel([waiter(), changer()])

    runner = coflow.start(body, initial_state={"dirty": False}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"dirty": True}
    timeline.assert_matches([(0.1, "changer sets dirty"), (0.1, "waiter unblocked")])


def test_wait_until_is_never_polled(coflow_backend: Any, timeline: Any, after: After) -> None:
    checked: list[Any] = []

    def counted(state: Any) -> bool:
        checked.append(state)
        return bool(state >= 2)

    def body() -> FlowGenerator:
        yield wait_until(counted)
        timeline.log("unblocked")

    runner = coflow.start(body, initial_state=0, backend=coflow_backend)
    # Between changes, time passes and the predicate is not called again.
    after(0.05, lambda: timeline.log(("checks", len(checked))))
    after(0.1, lambda: runner.signal(lambda state: state + 1))
    after(0.25, lambda: timeline.log(("checks", len(checked))))
    after(0.3, lambda: runner.signal(lambda state: state + 1))

    assert runner.result(timeout=5) == 2
    timeline.assert_matches([(0.05, ("checks", 1)), (0.25, ("checks", 2)), (0.3, "unblocked")])
    assert checked == [0, 1, 2]


def test_wait_until_timeout_raises_flow_timeout_at_the_yield(
    coflow_backend: Any, timeline: Any
) -> None:
    def body() -> FlowGenerator:
        try:
            yield wait_until(is_dirty, timeout=0.2)
        except FlowTimeout:
            timeline.log("timed out")
            yield set_state(lambda state: {**state, "gave_up": True})

    runner = coflow.start(body, initial_state={"dirty": False}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"dirty": False, "gave_up": True}
    assert runner.status == "done"
    timeline.assert_matches([(0.2, "timed out")])


def test_an_uncaught_wait_until_timeout_fails_the_flow(coflow_backend: Any) -> None:
    def body() -> FlowGenerator:
        yield wait_until(is_dirty, timeout=0.1)

    runner = coflow.start(body, initial_state={"dirty": False}, backend=coflow_backend)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, FlowTimeout)
    assert runner.status == "failed"


def test_wait_until_satisfied_before_its_timeout_does_not_time_out(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        yield wait_until(is_dirty, timeout=0.3)
        timeline.log("unblocked")
        yield wait(0.2)  # past the old deadline: nothing fires
        timeline.log("finished")

    runner = coflow.start(body, initial_state={"dirty": False}, backend=coflow_backend)
    after(0.1, lambda: runner.signal(mark_dirty))

    assert runner.result(timeout=5) == {"dirty": True}
    timeline.assert_matches([(0.1, "unblocked"), (0.3, "finished")])


def test_wait_until_gives_the_state_that_satisfied_the_predicate(
    coflow_backend: Any, after: After
) -> None:
    results: list[Any] = []

    def body() -> FlowGenerator:
        results.append((yield wait_until(lambda state: state["count"] >= 3)))

    runner = coflow.start(body, initial_state={"count": 0}, backend=coflow_backend)
    after(0.1, lambda: runner.signal(lambda state: {"count": 2}))
    after(0.2, lambda: runner.signal(lambda state: {"count": 3}))

    assert runner.result(timeout=5) == {"count": 3}
    assert results == [{"count": 3}]


def test_a_raising_predicate_raises_at_the_yield(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    failure = ZeroDivisionError("bad predicate")

    def fragile(state: Any) -> bool:
        if state == "poisoned":
            raise failure
        return False

    def body() -> FlowGenerator:
        try:
            yield wait_until(fragile)
        except ZeroDivisionError as error:
            timeline.log(("caught", error is failure))

    runner = coflow.start(body, initial_state="fine", backend=coflow_backend)
    after(0.1, lambda: runner.signal(lambda state: "poisoned"))

    assert runner.result(timeout=5) == "poisoned"
    timeline.assert_matches([(0.1, ("caught", True))])


def test_a_predicate_raising_on_its_first_check_raises_at_once(coflow_backend: Any) -> None:
    def body() -> FlowGenerator:
        yield wait_until(is_dirty)

    runner = coflow.start(body, initial_state={}, backend=coflow_backend)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, KeyError)
