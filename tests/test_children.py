"""Child flows (SPEC §6): ``call`` and ``spawn`` start child runners tied to their parent.

A child is a full ``Runner`` on the parent's backend: own state, notify, status,
``stop()`` and ``result()``.  ``call`` waits for it and gives its final state (or
raises ``ChildFailed``); ``spawn`` gives its runner at once.  ``ref=`` makes a start
idempotent within one parent.  Stopping or failing a parent stops its running
children first (cascade), and the parent ends only after all of their cleanup.

Every test runs on each backend; flows block on waits, ``wait_until`` or
``receive`` and the test acts through ``after``, so the timelines hold on a real
clock too.
"""

from __future__ import annotations

import dataclasses
import math
import queue
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Gate

import coflow
from coflow import (
    ChildFailed,
    FlowDone,
    FlowFailed,
    FlowGenerator,
    FlowState,
    FlowStopped,
    FlowTimeout,
    call,
    get_state,
    parallel,
    race,
    receive,
    set_state,
    spawn,
    wait,
    wait_until,
)
from coflow.testing import After, Timeline

# Module-level flows, so that their names (the child runners' names) are plain.


@coflow.flow(initial_state={"count": 0})
def counter() -> FlowGenerator:
    """A child with a declared initial state: counts twice, pausing between."""
    yield set_state(lambda s: {**s, "count": s["count"] + 1})
    yield wait(0.05)
    yield set_state(lambda s: {**s, "count": s["count"] + 1})


def plain_child() -> FlowGenerator:
    """A generator function child: no declared initial state."""
    state = yield get_state()
    yield wait(0.05)
    yield set_state(lambda s: ("plain child saw", state))


def instant_child() -> FlowGenerator:
    """Finishes without ever blocking."""
    yield set_state(lambda s: (s or 0) + 1)


def blocked_forever() -> FlowGenerator:
    yield wait_until(lambda s: False)


def worker(label: str) -> FlowGenerator:
    yield wait(0.05)
    yield set_state(lambda s: label)


def _child_with_cleanup(
    timeline: Timeline, seconds: float | None = None
) -> Callable[[], FlowGenerator]:
    """A child that runs ``seconds`` (forever if None), and takes 0.1 s to clean up when stopped."""

    def slow() -> FlowGenerator:
        try:
            if seconds is None:
                yield wait_until(lambda s: False)
            else:
                yield wait(seconds)
                timeline.log("slow child finished")
        finally:
            timeline.log("child cleanup starts")
            yield wait(0.1)
            timeline.log("child cleanup ends")

    slow.__name__ = "slow" if seconds is not None else "child"  # the child runner's name
    return slow


def _started(runner: coflow.Runner, holder: list[coflow.Runner]) -> coflow.Runner:
    holder.append(runner)
    return runner


# call: the child's final state, its own initial state and notify


def test_call_gives_the_child_final_state_and_leaves_the_parent_state_alone(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        declared = yield call(counter)
        timeline.log(("declared", declared))
        given = yield call(counter, initial_state={"count": 10})
        timeline.log(("given", given))
        plain = yield call(plain_child)
        timeline.log(("plain", plain))
        return "ignored"

    runner = coflow.start(parent, initial_state={"parent": True}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"parent": True}, "a child never touches its parent's state"
    timeline.assert_matches(
        [
            (0.05, ("declared", {"count": 2})),
            (0.10, ("given", {"count": 12})),
            # No initial state given or declared: None, not the parent's state.
            (0.15, ("plain", ("plain child saw", None))),
        ]
    )
    children = runner.children()
    assert [child.name for child in children] == ["counter", "counter", "plain_child"]
    assert [child.status for child in children] == ["done", "done", "done"]
    assert all(child is not runner for child in children)
    assert children[1].result(timeout=5) == {"count": 12}


def test_call_of_a_child_that_never_blocks_gives_its_result_at_once(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        results = []
        for start in (None, 1, 41):
            results.append((yield call(instant_child, initial_state=start)))
        timeline.log(("results", results))
        yield wait(0.05)
        timeline.log("parent goes on")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.0, ("results", [1, 2, 42])), (0.05, "parent goes on")])
    assert [child.status for child in runner.children()] == ["done"] * 3


def test_the_child_notify_sees_its_events_and_the_parent_notify_does_not(
    coflow_backend: Any,
) -> None:
    child_events: list[Any] = []
    queued: queue.Queue[Any] = queue.Queue()
    parent_events: list[Any] = []

    def parent() -> FlowGenerator:
        yield set_state(lambda s: "parent calling")
        yield call(counter, notify=child_events.append)
        yield call(counter, initial_state={"count": 5}, notify=queued)
        yield set_state(lambda s: "parent done")

    runner = coflow.start(
        parent, initial_state="idle", notify=parent_events.append, backend=coflow_backend
    )

    assert runner.result(timeout=5) == "parent done"
    first, second = runner.children()
    assert [type(event) for event in child_events] == [FlowState, FlowState, FlowDone]
    assert [event.state for event in child_events] == [{"count": 1}, {"count": 2}, {"count": 2}]
    assert all(event.runner is first for event in child_events)
    from_queue = [queued.get_nowait() for _ in range(queued.qsize())]
    assert [(type(event), event.state) for event in from_queue] == [
        (FlowState, {"count": 6}),
        (FlowState, {"count": 7}),
        (FlowDone, {"count": 7}),
    ]
    assert all(event.runner is second for event in from_queue)
    # The parent's notify saw only the parent's own states.
    assert [(type(event), event.state) for event in parent_events] == [
        (FlowState, "parent calling"),
        (FlowState, "parent done"),
        (FlowDone, "parent done"),
    ]
    assert all(event.runner is runner for event in parent_events)


# ChildFailed


@pytest.mark.parametrize("when", ["at once", "after a wait"])
def test_a_failed_child_raises_child_failed_that_the_parent_can_catch(
    coflow_backend: Any, timeline: Timeline, when: str
) -> None:
    boom = ValueError("child broke")

    def child() -> FlowGenerator:
        if when == "after a wait":
            yield wait(0.1)
        yield set_state(lambda s: "half way")
        raise boom

    def parent() -> FlowGenerator:
        try:
            yield call(child)
        except ChildFailed as failed:
            timeline.log("caught")
            assert failed.__cause__ is boom
            assert failed.reason is boom
            assert failed.child_name == "child"
            assert "child" in str(failed)
            yield set_state(lambda s: "recovered")
        else:
            timeline.log("no error")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    assert runner.result(timeout=5) == "recovered"
    timeline.assert_matches([(0.1 if when == "after a wait" else 0.0, "caught")])
    (child_runner,) = runner.children()
    assert child_runner.status == "failed"
    assert runner.children(status="failed") == [child_runner]
    assert child_runner.get_state() == "half way"
    with pytest.raises(FlowFailed) as child_result:
        child_runner.result(timeout=5)
    assert child_result.value.__cause__ is boom


def test_an_uncaught_child_failure_fails_the_parent(coflow_backend: Any) -> None:
    events: list[Any] = []

    def child() -> FlowGenerator:
        yield wait(0.05)
        raise KeyError("missing")

    def parent() -> FlowGenerator:
        yield call(child)
        yield set_state(lambda s: "not reached")

    runner = coflow.start(
        parent, initial_state="start", notify=events.append, backend=coflow_backend
    )

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert runner.status == "failed"
    assert runner.get_state() == "start"
    child_failed = failed.value.__cause__
    assert isinstance(child_failed, ChildFailed)
    assert isinstance(child_failed.__cause__, KeyError)
    assert child_failed.reason is child_failed.__cause__
    assert isinstance(events[-1], coflow.FlowError)
    assert events[-1].reason is child_failed


def test_a_child_stopped_from_outside_makes_call_raise_child_failed_with_flow_stopped(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    child = _child_with_cleanup(timeline)

    def parent() -> FlowGenerator:
        try:
            yield call(child)
        except ChildFailed as failed:
            timeline.log(("caught", type(failed.__cause__).__name__, type(failed.reason).__name__))
            assert failed.child_name == "child"
        yield set_state(lambda s: "parent went on")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.children()[0].stop())

    assert runner.result(timeout=5) == "parent went on"
    timeline.assert_matches(
        [
            (0.1, "child cleanup starts"),
            (0.2, "child cleanup ends"),
            (0.2, ("caught", "FlowStopped", "FlowStopped")),
        ]
    )
    assert [child.status for child in runner.children()] == ["stopped"]


# call(timeout=...)


def _slow_child(timeline: Timeline) -> Callable[[], FlowGenerator]:
    return _child_with_cleanup(timeline, seconds=1.0)


def test_call_timeout_with_a_timeout_value_stops_the_child_and_gives_the_value(
    coflow_backend: Any, timeline: Timeline
) -> None:
    slow = _slow_child(timeline)
    holder: list[coflow.Runner] = []

    def parent() -> FlowGenerator:
        value = yield call(slow, timeout=0.1, timeout_value="too late")
        (child,) = holder[0].children()
        timeline.log(("parent resumed", value, child.status))
        fast = yield call(counter, timeout=0.5, timeout_value="unused")
        timeline.log(("in time", fast))

    runner = _started(coflow.start(parent, initial_state=None, backend=coflow_backend), holder)

    runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.1, "child cleanup starts"),
            (0.2, "child cleanup ends"),
            (0.2, ("parent resumed", "too late", "stopped")),
            (0.25, ("in time", {"count": 2})),
        ]
    )
    assert [child.status for child in runner.children()] == ["stopped", "done"]


def test_call_timeout_with_a_none_timeout_value_gives_none(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        value = yield call(blocked_forever, timeout=0.1, timeout_value=None)
        timeline.log(("value", value))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.1, ("value", None))])


def test_call_timeout_without_a_timeout_value_raises_flow_timeout_at_the_call(
    coflow_backend: Any, timeline: Timeline
) -> None:
    slow = _slow_child(timeline)

    def parent() -> FlowGenerator:
        try:
            yield call(slow, timeout=0.1)
        except FlowTimeout as timed_out:
            timeline.log(("timed out", str(timed_out)))
            assert isinstance(timed_out, TimeoutError)
        yield set_state(lambda s: "handled")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    assert runner.result(timeout=5) == "handled"
    timeline.assert_matches(
        [
            (0.1, "child cleanup starts"),
            (0.2, "child cleanup ends"),
            (0.2, ("timed out", "call(slow) timed out after 0.1s")),
        ]
    )
    assert [child.status for child in runner.children()] == ["stopped"]


def test_an_uncaught_call_timeout_fails_the_parent(coflow_backend: Any) -> None:
    def parent() -> FlowGenerator:
        yield call(blocked_forever, timeout=0.05)

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, FlowTimeout)
    assert [child.status for child in runner.children()] == ["stopped"]


# spawn


def test_spawn_gives_a_running_runner_at_once_and_the_parent_goes_on(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def child() -> FlowGenerator:
        timeline.log("child starts")
        yield wait(0.1)
        yield set_state(lambda s: {**s, "child": "done"})
        timeline.log("child ends")

    def parent() -> FlowGenerator:
        timeline.log("before spawn")
        spawned = yield spawn(child, initial_state={"own": True})
        timeline.log(("spawned", isinstance(spawned, coflow.Runner), spawned.status))
        yield wait(0.05)
        timeline.log(("parent at 0.05", spawned.status))
        final = yield call(counter)  # the parent keeps working while the child runs
        timeline.log(("parent called", final, spawned.status))
        yield wait(0.1)
        timeline.log(("parent at 0.2", spawned.status))

    runner = coflow.start(parent, initial_state="parent", backend=coflow_backend)

    assert runner.result(timeout=5) == "parent"
    child_runner, called = runner.children()
    assert (child_runner.name, called.name) == ("child", "counter")
    assert child_runner.result(timeout=5) == {"own": True, "child": "done"}
    timeline.assert_matches(
        [
            (0.0, "before spawn"),
            (0.0, ("spawned", True, "running")),
            (0.0, "child starts"),  # only after the parent's step
            (0.05, ("parent at 0.05", "running")),
            (0.1, "child ends"),
            (0.1, ("parent called", {"count": 2}, "done")),
            (0.2, ("parent at 0.2", "done")),
        ]
    )


def test_spawn_with_the_same_ref_twice_gives_the_same_runner(
    coflow_backend: Any, after: After
) -> None:
    seen: dict[str, Any] = {}

    def parent() -> FlowGenerator:
        first = yield spawn(blocked_forever, ref="one")
        second = yield spawn(blocked_forever, ref="one")
        other_ref = yield spawn(blocked_forever, ref="two")
        # A generator object counts as its generator function.
        by_object = yield spawn(worker("a"), ref="job")
        again_by_object = yield spawn(worker("b"), ref="job")
        other_flow = yield spawn(plain_child, ref="job")
        seen.update(
            same=second is first,
            other_ref=other_ref is not first,
            objects=again_by_object is by_object,
            other_flow=other_flow is not by_object,
        )
        yield receive()

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.1, runner.stop)

    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert seen == {"same": True, "other_ref": True, "objects": True, "other_flow": True}
    children = runner.children()
    assert len(children) == 4
    assert children[2].result(timeout=5) == "a"


def test_spawn_without_a_ref_starts_a_new_child_each_time(coflow_backend: Any) -> None:
    spawned: list[coflow.Runner] = []

    def parent() -> FlowGenerator:
        spawned.append((yield spawn(worker("x"))))
        spawned.append((yield spawn(worker("y"))))
        spawned.append((yield spawn(counter)))
        spawned.append((yield spawn(counter)))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    assert len({id(child) for child in spawned}) == 4
    assert runner.children() == spawned
    assert [child.result(timeout=5) for child in spawned] == ["x", "y", {"count": 2}, {"count": 2}]


def test_call_with_a_ref_of_a_done_child_gives_its_result_without_a_new_child(
    coflow_backend: Any, timeline: Timeline
) -> None:
    starts: list[str] = []

    def payment() -> FlowGenerator:
        starts.append("payment")
        yield wait(0.1)
        yield set_state(lambda s: {"paid": len(starts)})

    def parent() -> FlowGenerator:
        first = yield call(payment, ref="pay")
        timeline.log(("first", first))
        again = yield call(payment, ref="pay")
        timeline.log(("again", again))
        other = yield call(payment, ref="other order")
        timeline.log(("other ref", other))
        unreffed = yield call(payment)
        timeline.log(("no ref", unreffed))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.1, ("first", {"paid": 1})),
            (0.1, ("again", {"paid": 1})),
            (0.2, ("other ref", {"paid": 2})),
            (0.3, ("no ref", {"paid": 3})),
        ]
    )
    assert starts == ["payment"] * 3
    assert [child.status for child in runner.children()] == ["done"] * 3


def test_call_with_a_ref_of_a_failed_child_raises_child_failed_at_once(
    coflow_backend: Any, timeline: Timeline
) -> None:
    starts: list[str] = []

    def charge() -> FlowGenerator:
        starts.append("charge")
        yield wait(0.1)
        raise ConnectionError("card declined")

    def parent() -> FlowGenerator:
        for attempt in ("first", "second"):
            try:
                yield call(charge, ref="card")
            except ChildFailed as failed:
                timeline.log((attempt, type(failed.__cause__).__name__))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches(
        [(0.1, ("first", "ConnectionError")), (0.1, ("second", "ConnectionError"))]
    )
    assert starts == ["charge"]


def test_call_with_a_ref_of_a_running_child_waits_for_it(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def job() -> FlowGenerator:
        message = yield receive()
        yield set_state(lambda s: ("job got", message))

    def parent() -> FlowGenerator:
        spawned = yield spawn(job, ref="job")
        timeline.log("spawned")
        final = yield call(job, ref="job")
        timeline.log(("call gave", final, spawned.status))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.children()[0].send("go"))

    runner.result(timeout=5)
    timeline.assert_matches([(0.0, "spawned"), (0.1, ("call gave", ("job got", "go"), "done"))])
    assert len(runner.children()) == 1


def test_a_ref_whose_child_was_stopped_starts_a_new_child(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        first = yield spawn(blocked_forever, ref="k")
        first.stop()
        yield wait(0.05)
        timeline.log(("first", first.status))
        second = yield spawn(blocked_forever, ref="k")
        timeline.log(("second is new", second is not first, second.status))
        second.stop()
        yield wait(0.05)
        final = yield call(counter, ref="k")  # a different flow: a different key anyway
        timeline.log(("other flow, same ref", final))
        third = yield call(worker("w"), ref="k")
        timeline.log(("worker", third))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.05, ("first", "stopped")),
            (0.05, ("second is new", True, "running")),
            (0.15, ("other flow, same ref", {"count": 2})),
            (0.2, ("worker", "w")),
        ]
    )
    assert [child.status for child in runner.children()] == ["stopped", "stopped", "done", "done"]


def test_a_call_with_a_ref_whose_child_is_stopped_while_waited_raises_then_restarts(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def parent() -> FlowGenerator:
        try:
            yield call(worker("never"), ref="w", timeout=0.02)
        except FlowTimeout:
            timeline.log("timed out")
        result = yield call(worker("second run"), ref="w")
        timeline.log(("second", result))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.02, "timed out"), (0.07, ("second", "second run"))])
    assert [child.status for child in runner.children()] == ["stopped", "done"]


# runner.children()


def test_children_keeps_the_latest_hundred_unreffed_finished_children_and_all_reffed(
    coflow_backend: Any,
) -> None:
    def parent() -> FlowGenerator:
        yield call(instant_child, ref="kept", initial_state=-1)
        for index in range(150):
            yield call(instant_child, initial_state=index)

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    children = runner.children()
    assert len(children) == 101
    assert [child.get_state() for child in children] == [0, *range(51, 151)]
    assert runner.children(status="done") == children


def test_children_with_an_unknown_status_is_a_value_error(coflow_backend: Any) -> None:
    def parent() -> FlowGenerator:
        yield call(instant_child)

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    runner.result(timeout=5)

    for bogus in ("bogus", "Running", "", "finished"):
        with pytest.raises(ValueError, match="status"):
            runner.children(status=bogus)
    assert runner.children(status=None) == runner.children()
    assert [runner.children(status=s) for s in ("running", "failed", "stopped")] == [[], [], []]


def test_a_runner_without_children_lists_none(coflow_backend: Any) -> None:
    runner = coflow.start(instant_child, initial_state=0, backend=coflow_backend)
    assert runner.result(timeout=5) == 1
    assert runner.children() == []
    assert runner.children(status="done") == []


# Cascade


def test_stopping_a_parent_stops_its_running_children_first_and_ends_after_all_cleanup(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def quick() -> FlowGenerator:
        yield wait(0.05)
        timeline.log("quick done")

    def blocker(label: str) -> FlowGenerator:
        try:
            yield wait_until(lambda s: False)
        finally:
            timeline.log(f"{label} cleanup starts")
            yield wait(0.1)
            timeline.log(f"{label} cleanup ends")

    def parent() -> FlowGenerator:
        try:
            yield spawn(quick)
            yield spawn(blocker("b"))
            yield spawn(blocker("c"))
            yield wait(10.0)
        finally:
            timeline.log("parent cleanup starts")
            yield wait(0.1)
            timeline.log("parent cleanup ends")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.1, runner.stop)
    after(0.15, lambda: timeline.log(("parent during child cleanup", runner.status)))
    after(0.25, lambda: timeline.log(("parent during own cleanup", runner.status)))

    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    timeline.log(("result raised", runner.status))
    timeline.assert_matches(
        [
            (0.05, "quick done"),
            # Last started first; the parent's body gets Cancelled only once they have ended.
            (0.1, "c cleanup starts"),
            (0.1, "b cleanup starts"),
            (0.15, ("parent during child cleanup", "running")),
            (0.2, "c cleanup ends"),
            (0.2, "b cleanup ends"),
            (0.2, "parent cleanup starts"),
            (0.25, ("parent during own cleanup", "running")),
            (0.3, "parent cleanup ends"),
            (0.3, ("result raised", "stopped")),
        ]
    )
    children = runner.children()
    assert [child.name for child in children] == ["quick", "blocker", "blocker"]
    assert [child.status for child in children] == ["done", "stopped", "stopped"]
    assert runner.children(status="done") == children[:1]
    assert runner.children(status="stopped") == children[1:]
    assert runner.children(status="running") == []
    assert runner.children(status="failed") == []
    for child in children[1:]:
        with pytest.raises(FlowStopped):
            child.result(timeout=5)


def test_stopping_a_parent_cascades_to_grandchildren_innermost_first(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def grandchild() -> FlowGenerator:
        try:
            yield wait(10.0)
        finally:
            timeline.log("grandchild cleanup")
            yield wait(0.05)

    def child() -> FlowGenerator:
        try:
            yield call(grandchild)
        finally:
            timeline.log("child cleanup")
            yield wait(0.05)

    def parent() -> FlowGenerator:
        try:
            yield call(child)
        finally:
            timeline.log("parent cleanup")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.1, runner.stop)

    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    timeline.log("result raised")
    timeline.assert_matches(
        [
            (0.1, "grandchild cleanup"),
            (0.15, "child cleanup"),
            (0.2, "parent cleanup"),
            (0.2, "result raised"),
        ]
    )
    (child_runner,) = runner.children()
    (grandchild_runner,) = child_runner.children()
    assert (child_runner.status, grandchild_runner.status) == ("stopped", "stopped")


def test_a_failing_parent_stops_its_running_children_before_it_reports_failed(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    boom = RuntimeError("parent broke")

    child = _child_with_cleanup(timeline)

    def parent() -> FlowGenerator:
        yield spawn(child)
        yield spawn(worker("finished early"))
        yield wait(0.1)
        raise boom

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    after(0.15, lambda: timeline.log(("parent during child cleanup", runner.status)))

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    timeline.log(("result raised", runner.status))
    assert failed.value.__cause__ is boom
    timeline.assert_matches(
        [
            (0.1, "child cleanup starts"),
            (0.15, ("parent during child cleanup", "running")),
            (0.2, "child cleanup ends"),
            (0.2, ("result raised", "failed")),
        ]
    )
    stopped, finished = runner.children()
    assert stopped.status == "stopped"
    assert finished.status == "done"
    assert finished.get_state() == "finished early", "a finished child is unaffected"


def test_a_parent_that_completes_leaves_its_spawned_child_running(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def child() -> FlowGenerator:
        timeline.log("child starts")
        yield wait(0.1)
        yield set_state(lambda s: "child finished")
        timeline.log("child ends")

    def parent() -> FlowGenerator:
        yield spawn(child)
        timeline.log("parent ends")

    runner = coflow.start(parent, initial_state="parent state", backend=coflow_backend)

    assert runner.result(timeout=5) == "parent state"
    (child_runner,) = runner.children()
    assert child_runner.status == "running"
    assert runner.children(status="running") == [child_runner]
    assert child_runner.result(timeout=5) == "child finished"
    timeline.assert_matches([(0.0, "parent ends"), (0.0, "child starts"), (0.1, "child ends")])
    assert runner.children(status="done") == [child_runner]


def test_stopping_a_finished_parent_leaves_its_still_running_spawned_child_alone(
    coflow_backend: Any,
) -> None:
    def parent() -> FlowGenerator:
        yield spawn(worker("still finishes"))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    runner.result(timeout=5)
    runner.stop()

    (child_runner,) = runner.children()
    assert child_runner.result(timeout=5) == "still finishes"
    assert runner.status == "done"


def test_a_child_stopped_on_its_own_does_not_stop_the_parent(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        spawned = yield spawn(blocked_forever)
        spawned.stop()
        yield wait(0.05)
        timeline.log(("child", spawned.status))
        yield set_state(lambda s: "parent fine")

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    assert runner.result(timeout=5) == "parent fine"
    timeline.assert_matches([(0.05, ("child", "stopped"))])


# Steps are values; bad input


def test_call_and_spawn_steps_are_comparable_values_with_a_readable_repr(
    coflow_backend: Any,
) -> None:
    notify = print
    assert call(counter) == call(counter)
    assert call(counter, ref="a", timeout=1.5, timeout_value=0) == call(
        counter, ref="a", timeout=1.5, timeout_value=0
    )
    assert hash(call(counter, ref="a")) == hash(call(counter, ref="a"))
    assert call(counter, ref="a") != call(counter, ref="b")
    assert call(counter) != call(plain_child)
    assert call(counter, initial_state=1) != call(counter)
    assert call(counter, notify=notify) == call(counter, notify=notify)
    assert spawn(counter, ref=("order", 7)) == spawn(counter, ref=("order", 7))
    assert spawn(counter) != spawn(counter, initial_state=None)
    assert spawn(counter) != call(counter)
    assert len({call(counter, ref="a"), call(counter, ref="a"), spawn(counter, ref="a")}) == 2

    shown = repr(call(plain_child, ref="a", timeout=1.5, timeout_value=0))
    assert shown.startswith("call(") and "plain_child" in shown
    assert "ref='a'" in shown and "timeout=1.5" in shown and "timeout_value=0" in shown
    shown = repr(spawn(plain_child, ref="b"))
    assert shown.startswith("spawn(") and "plain_child" in shown and "ref='b'" in shown
    assert "timeout" not in repr(call(plain_child))

    step = call(counter)
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        step.ref = "changed"  # type: ignore[misc]

    # Stepped by hand, a parent yields exactly these values ...
    def parent() -> FlowGenerator:
        result = yield call(counter, ref="a")
        child = yield spawn(plain_child)
        return result, child

    by_hand = parent()
    assert next(by_hand) == call(counter, ref="a")
    assert by_hand.send({"count": 2}) == spawn(plain_child)
    # ... and the same flow runs on the backend.
    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    runner.result(timeout=5)
    assert [child.name for child in runner.children()] == ["counter", "plain_child"]


def _bad_child_steps() -> list[Any]:
    nan, inf = math.nan, math.inf
    return [
        pytest.param(lambda: call(42), TypeError, id="call-not-a-flow"),
        pytest.param(lambda: call(lambda: None), TypeError, id="call-plain-function"),
        pytest.param(lambda: call(counter, ref=["x"]), TypeError, id="call-unhashable-ref"),
        pytest.param(lambda: call(plain_child, ref={}), TypeError, id="call-unhashable-ref-fn"),
        pytest.param(lambda: call(counter, notify=5), TypeError, id="call-bad-notify"),
        pytest.param(lambda: call(plain_child, notify="q"), TypeError, id="call-bad-notify-fn"),
        pytest.param(lambda: call(counter, timeout=-1), ValueError, id="call-negative-timeout"),
        pytest.param(lambda: call(counter, timeout=nan), ValueError, id="call-nan-timeout"),
        pytest.param(lambda: call(counter, timeout=inf), ValueError, id="call-inf-timeout"),
        pytest.param(lambda: call(plain_child, timeout=-0.5), ValueError, id="call-neg-fn"),
        pytest.param(lambda: call(counter, timeout="1"), TypeError, id="call-str-timeout"),
        pytest.param(lambda: spawn("counter"), TypeError, id="spawn-not-a-flow"),
        pytest.param(lambda: spawn(counter, ref=[1]), TypeError, id="spawn-unhashable-ref"),
        pytest.param(lambda: spawn(plain_child, ref=set()), TypeError, id="spawn-unhashable-fn"),
        pytest.param(lambda: spawn(counter, notify=object()), TypeError, id="spawn-bad-notify"),
    ]


@pytest.mark.parametrize(("build", "error"), _bad_child_steps())
def test_bad_call_and_spawn_arguments_are_rejected_when_the_step_is_built(
    coflow_backend: Any, build: Callable[[], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build()

    # Built inside a flow, the error escapes the flow at that line, before any child starts.
    def parent() -> FlowGenerator:
        yield wait(0.01)
        yield build()

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, error)
    assert runner.children() == []


def test_good_call_and_spawn_arguments_are_accepted(coflow_backend: Any) -> None:
    q: queue.Queue[Any] = queue.Queue()
    for step in (
        call(counter, ref=("tuple", 1), timeout=0, notify=q),
        call(counter, timeout=2, timeout_value=None),
        call(counter(), ref=frozenset({1})),
        call(wait(0.01)),
        spawn(plain_child(), notify=print),
        spawn(coflow.sequence(wait(0.01))),
    ):
        assert step == step

    def parent() -> FlowGenerator:
        stepped = yield call(wait(0.01), initial_state="a step as a flow")
        from_object = yield call(worker("generator object"))
        return stepped, from_object

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)
    runner.result(timeout=5)
    assert [child.get_state() for child in runner.children()] == [
        "a step as a flow",
        "generator object",
    ]


# call inside parallel and race


def test_call_inside_parallel_runs_the_children_concurrently(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        results = yield parallel(
            [call(worker("slow"), ref="slow"), call(counter), call(instant_child, initial_state=9)]
        )
        timeline.log(("parallel", results))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.05, ("parallel", ["slow", {"count": 2}, 10]))])
    assert [child.status for child in runner.children()] == ["done"] * 3


def test_a_failing_call_inside_parallel_stops_the_sibling_children(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def failing() -> FlowGenerator:
        yield wait(0.05)
        raise ValueError("branch child broke")

    def slow() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            timeline.log("slow child cleanup")
            yield wait(0.05)

    def parent() -> FlowGenerator:
        try:
            yield parallel([call(slow), call(failing)])
        except ChildFailed as failed:
            timeline.log(("caught", type(failed.__cause__).__name__))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.05, "slow child cleanup"), (0.1, ("caught", "ValueError"))])
    assert [child.status for child in runner.children()] == ["stopped", "failed"]


def test_call_inside_race_stops_the_loser_child_before_the_race_returns(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def slow() -> FlowGenerator:
        try:
            yield wait(1.0)
            timeline.log("slow finished")
        finally:
            timeline.log("loser cleanup starts")
            yield wait(0.1)
            timeline.log("loser cleanup ends")

    def fast() -> FlowGenerator:
        yield wait(0.1)
        yield set_state(lambda s: "fast won")

    def parent() -> FlowGenerator:
        winner = yield race([call(slow), call(fast)])
        timeline.log(("race returned", winner))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.1, "loser cleanup starts"),
            (0.2, "loser cleanup ends"),
            (0.2, ("race returned", "fast won")),
        ]
    )
    loser, winner = runner.children()
    assert (loser.name, loser.status) == ("slow", "stopped")
    assert (winner.name, winner.status) == ("fast", "done")


def test_a_call_raced_against_a_timer_is_stopped_when_the_timer_wins(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def parent() -> FlowGenerator:
        winner = yield race([call(blocked_forever), wait(0.1)])
        timeline.log(("race returned", winner))

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.1, ("race returned", None))])
    assert [child.status for child in runner.children()] == ["stopped"]


# Where errors happened


def test_an_error_in_a_child_notes_the_path_parent_then_child(coflow_backend: Any) -> None:
    def child() -> FlowGenerator:
        yield wait(0.01)
        raise ValueError("deep down")

    def parent() -> FlowGenerator:
        yield call(child)

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    child_failed = failed.value.__cause__
    assert isinstance(child_failed, ChildFailed)
    error = child_failed.__cause__
    assert isinstance(error, ValueError)
    notes = getattr(error, "__notes__", [])
    assert any("in flow parent > child" in note for note in notes), notes
    assert any(__file__ in note or "test_children.py" in note for note in notes), notes
    (child_runner,) = runner.children()
    with pytest.raises(FlowFailed) as child_result:
        child_runner.result(timeout=5)
    assert "parent > child" in str(child_result.value)


def test_an_error_in_a_grandchild_notes_the_whole_path(coflow_backend: Any) -> None:
    def grandchild() -> FlowGenerator:
        yield wait(0.01)
        raise KeyError("deepest")

    def child() -> FlowGenerator:
        yield spawn(worker("sibling"))
        yield call(grandchild)

    def parent() -> FlowGenerator:
        yield call(child)

    runner = coflow.start(parent, initial_state=None, backend=coflow_backend, name="root")

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    outer = failed.value.__cause__
    assert isinstance(outer, ChildFailed) and outer.child_name == "child"
    inner = outer.__cause__
    assert isinstance(inner, ChildFailed) and inner.child_name == "grandchild"
    error = inner.__cause__
    assert isinstance(error, KeyError)
    notes = getattr(error, "__notes__", [])
    assert any("in flow root > child > grandchild" in note for note in notes), notes


def _nested_calls(depth: int, leaf: Callable[[], FlowGenerator]) -> Callable[[], FlowGenerator]:
    """A flow that calls a flow that calls ... ``depth`` levels down to ``leaf``."""

    def level(below: Callable[[], FlowGenerator]) -> Callable[[], FlowGenerator]:
        def body() -> FlowGenerator:
            yield call(below)

        return body

    flow = leaf
    for _ in range(depth):
        flow = level(flow)
    return flow


DEEPER_THAN_THE_RECURSION_LIMIT = 1200


def test_a_chain_of_children_deeper_than_the_recursion_limit_stops_innermost_first(
    coflow_backend: Any,
) -> None:
    cleaned_up: list[str] = []
    reached = Gate(coflow_backend)

    def leaf() -> FlowGenerator:
        try:
            reached.open()
            yield wait_until(lambda s: False)
        finally:
            cleaned_up.append("leaf")

    runner = coflow.start(
        _nested_calls(DEEPER_THAN_THE_RECURSION_LIMIT, leaf), backend=coflow_backend
    )
    reached.wait()
    runner.stop()

    with pytest.raises(FlowStopped):
        runner.result(timeout=10)
    assert cleaned_up == ["leaf"]
    child = runner
    for _ in range(DEEPER_THAN_THE_RECURSION_LIMIT):
        (child,) = child.children()
        assert child.status == "stopped"


def test_a_failure_at_the_bottom_of_a_deep_chain_reaches_the_top_as_child_failed(
    coflow_backend: Any,
) -> None:
    def leaf() -> FlowGenerator:
        yield wait(0.01)
        raise KeyError("deep")

    runner = coflow.start(
        _nested_calls(DEEPER_THAN_THE_RECURSION_LIMIT, leaf), backend=coflow_backend
    )

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=10)
    error = failed.value.__cause__
    depth = 0
    while isinstance(error, ChildFailed):
        error, depth = error.__cause__, depth + 1
    assert depth == DEEPER_THAN_THE_RECURSION_LIMIT
    assert isinstance(error, KeyError)
    message = str(failed.value.__cause__)  # names the flows down to the error, middle elided
    assert message.endswith(": KeyError('deep')"), message
    assert f"... {DEEPER_THAN_THE_RECURSION_LIMIT - 8} more ..." in message, message
    assert len(message) < 300, message
