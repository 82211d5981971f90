"""Supervision (SPEC §5): ``coflow.Supervisor`` restarts the flows started under it.

A supervised runner that ends is restarted from its initial state on the same
handle (``transient``: after a failure; ``permanent``: after any end;
``temporary``: never), at most ``max_restarts`` times within ``max_seconds`` on
the backend's clock; past that it ends ``failed``.  ``start`` finds its
supervisor explicitly, in the innermost ``with`` block, or installed
process-wide.  Child flows keep their ``ref`` across restarts of their parent.

Behaviour tests take ``backend`` and run on every backend.  Flows that the
test must catch at a given point open a :class:`Gate` (itself a tiny flow,
waited on with ``result()``, so it works on the virtual clock and in a gevent
hub alike); no test sleeps to let things settle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from typing import Any

import pytest
from conftest import Gate, run_async

import coflow
from coflow import (
    ChildFailed,
    FlowDone,
    FlowError,
    FlowException,
    FlowFailed,
    FlowGenerator,
    FlowRestarted,
    FlowState,
    FlowStopped,
    Supervisor,
    call,
    get_state,
    receive,
    run,
    set_state,
    spawn,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend
from coflow.testing import After, Timeline

# Helpers


class Crashing:
    """A flow that counts its runs: each run sets the state to 1, waits ``delay``,
    then fails on the first ``failures`` runs (a new error each time) and completes after.
    """

    def __init__(
        self,
        failures: int,
        *,
        delay: float = 0.0,
        timeline: Timeline | None = None,
        name: str = "crashing",
    ) -> None:
        self.runs = 0
        self.errors: list[Exception] = []

        @coflow.flow(initial_state=0, name=name)
        def body() -> FlowGenerator:
            run_index = self.runs
            self.runs += 1
            if timeline is not None:
                timeline.log(f"start {run_index}")
            yield set_state(lambda s: 1)
            if delay:
                yield wait(delay)
            if run_index < failures:
                error = RuntimeError(f"crash {run_index}")
                self.errors.append(error)
                raise error

        self.flow = body


def describe(event: Any) -> tuple[str, Any]:
    """An event as ``(kind, payload)``; exceptions compare by identity."""
    if isinstance(event, FlowState):
        return ("state", event.state)
    if isinstance(event, FlowRestarted):
        return ("restarted", event.reason)
    if isinstance(event, FlowError):
        return ("error", event.reason)
    if isinstance(event, FlowDone):
        return ("done", event.state)
    raise AssertionError(f"unexpected event {event!r}")


def idle() -> FlowGenerator:
    """Runs until stopped."""
    yield wait_until(lambda s: False)


def notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", ()))


# Restart policies


def test_transient_restarts_after_a_failure_at_the_moment_it_fails(
    coflow_backend: Any, timeline: Timeline
) -> None:
    crashing = Crashing(failures=2, delay=0.1, timeline=timeline)

    def on_event(event: Any) -> None:
        if isinstance(event, (FlowDone, FlowError)):
            timeline.log(describe(event)[0])

    runner = coflow.start(
        crashing.flow,
        backend=coflow_backend,
        notify=on_event,
        supervisor=Supervisor(max_restarts=3),
    )
    assert runner.result(timeout=5) == 1
    timeline.assert_matches([(0.0, "start 0"), (0.1, "start 1"), (0.2, "start 2"), (0.3, "done")])
    assert runner.restarts == 2
    assert runner.status == "done"


def test_transient_does_not_restart_after_a_normal_end(coflow_backend: Any) -> None:
    crashing = Crashing(failures=0)
    events: list[Any] = []
    sup = Supervisor(restart="transient")
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, notify=events.append, supervisor=sup
    )
    assert runner.result(timeout=5) == 1
    assert crashing.runs == 1
    assert runner.restarts == 0
    assert [describe(e) for e in events] == [("state", 1), ("done", 1)]
    assert sup.children() == []


def test_permanent_restarts_after_a_normal_end_and_gives_up_failed(coflow_backend: Any) -> None:
    crashing = Crashing(failures=0, name="ticker")
    events: list[Any] = []
    sup = Supervisor(restart="permanent", max_restarts=2)
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, notify=events.append, supervisor=sup
    )

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)

    reason = failed.value.__cause__
    assert type(reason) is FlowException
    assert "flow 'ticker' kept ending; the supervisor gave up" in str(reason)
    assert crashing.runs == 3
    assert runner.restarts == 2
    assert runner.status == "failed"
    # A normal end that is restarted sends FlowRestarted(None), never FlowDone.
    assert [describe(e) for e in events] == [
        ("state", 1),
        ("restarted", None),
        ("state", 0),
        ("state", 1),
        ("restarted", None),
        ("state", 0),
        ("state", 1),
        ("error", reason),
    ]
    assert all(e.runner is runner for e in events)


def test_permanent_restarts_after_a_failure_too(coflow_backend: Any) -> None:
    crashing = Crashing(failures=1)
    events: list[Any] = []
    sup = Supervisor(restart="permanent", max_restarts=2)
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, notify=events.append, supervisor=sup
    )

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)

    # A failure, then two normal ends: the second normal end is one too many.
    assert crashing.runs == 3
    assert runner.restarts == 2
    assert "kept ending" in str(failed.value.__cause__)
    assert [describe(e)[0] for e in events] == [
        "state",
        "restarted",
        "state",
        "state",
        "restarted",
        "state",
        "state",
        "error",
    ]
    assert events[1].reason is crashing.errors[0]
    assert events[4].reason is None


def test_temporary_never_restarts_a_failed_flow(coflow_backend: Any) -> None:
    crashing = Crashing(failures=1)
    events: list[Any] = []
    sup = Supervisor(restart="temporary")
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, notify=events.append, supervisor=sup
    )

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)

    assert failed.value.__cause__ is crashing.errors[0]
    assert crashing.runs == 1
    assert runner.restarts == 0
    assert [describe(e) for e in events] == [("state", 1), ("error", crashing.errors[0])]
    assert not any("gave up" in note for note in notes(crashing.errors[0]))
    assert sup.children() == []


def test_temporary_never_restarts_a_completed_flow(coflow_backend: Any) -> None:
    crashing = Crashing(failures=0)
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, supervisor=Supervisor(restart="temporary")
    )
    assert runner.result(timeout=5) == 1
    assert crashing.runs == 1
    assert runner.restarts == 0


# What a restart does


def test_a_restart_keeps_the_handle_and_sends_restarted_then_the_initial_state(
    coflow_backend: Any,
) -> None:
    crashing = Crashing(failures=99)
    events: list[Any] = []
    statuses: list[str] = []

    def on_event(event: Any) -> None:
        events.append(event)
        if isinstance(event, FlowRestarted):
            statuses.append(event.runner.status)

    sup = Supervisor(max_restarts=2)
    runner = coflow.start(crashing.flow, backend=coflow_backend, notify=on_event, supervisor=sup)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)

    first, second, last = crashing.errors
    assert [describe(e) for e in events] == [
        ("state", 1),
        ("restarted", first),
        ("state", 0),
        ("state", 1),
        ("restarted", second),
        ("state", 0),
        ("state", 1),
        ("error", last),
    ]
    assert all(e.runner is runner for e in events)
    assert statuses == ["running", "running"]  # a restarting runner never looks ended
    assert runner.restarts == 2
    assert runner.status == "failed"
    # result() reports the last error, marked as the one the supervisor gave up on.
    assert failed.value.__cause__ is last
    assert failed.value.reason is last
    assert any("the supervisor gave up on flow 'crashing'" in note for note in notes(last)), notes(
        last
    )
    assert sup.children() == []


def test_the_initial_state_is_sent_after_a_restart_even_when_equal_to_the_last(
    coflow_backend: Any,
) -> None:
    errors: list[Exception] = []

    @coflow.flow(initial_state="same")
    def unchanged() -> FlowGenerator:
        yield get_state()
        error = ValueError(f"failure {len(errors)}")
        errors.append(error)
        raise error

    events: list[Any] = []
    runner = coflow.start(
        unchanged,
        backend=coflow_backend,
        notify=events.append,
        supervisor=Supervisor(max_restarts=2),
    )
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert [describe(e) for e in events] == [
        ("restarted", errors[0]),
        ("state", "same"),
        ("restarted", errors[1]),
        ("state", "same"),
        ("error", errors[2]),
    ]


def test_a_restart_starts_from_the_initial_state_given_to_start(coflow_backend: Any) -> None:
    seen: list[Any] = []

    @coflow.flow(initial_state={"n": 0})
    def counting() -> FlowGenerator:
        seen.append((yield get_state()))
        yield set_state(lambda s: {"n": s["n"] + 1})
        if len(seen) < 3:
            raise RuntimeError("again")

    runner = coflow.start(
        counting, initial_state={"n": 10}, backend=coflow_backend, supervisor=Supervisor()
    )
    assert runner.result(timeout=5) == {"n": 11}
    assert seen == [{"n": 10}, {"n": 10}, {"n": 10}]
    assert runner.restarts == 2


def test_a_restart_empties_the_mailbox(coflow_backend: Any) -> None:
    received: list[Any] = []

    def worker() -> FlowGenerator:
        if not received:
            received.append((yield receive(match=lambda m: m == "crash")))
            raise RuntimeError("crash requested")
        received.append((yield receive()))

    def on_event(event: Any) -> None:
        if isinstance(event, FlowRestarted):
            event.runner.send("fresh")  # after the restart emptied the mailbox

    runner = coflow.start(worker, backend=coflow_backend, notify=on_event, supervisor=Supervisor())
    runner.send("left over")  # still in the mailbox when the first run fails
    runner.send("crash")
    assert runner.result(timeout=5) is None
    assert received == ["crash", "fresh"]
    assert runner.restarts == 1


def test_events_stream_continues_across_restarts(coflow_backend: Any) -> None:
    runs: list[int] = []

    @coflow.flow(initial_state=0)
    def gated() -> FlowGenerator:
        runs.append(len(runs))
        if len(runs) == 1:
            yield wait_until(lambda s: s == 1)  # lets the test attach its stream first
            raise RuntimeError("first run fails")
        yield set_state(lambda s: 2)

    runner = coflow.start(gated, backend=coflow_backend, supervisor=Supervisor())
    stream = runner.events()
    runner.signal(lambda s: 1)
    assert runner.result(timeout=5) == 2
    assert [describe(e)[0] for e in stream] == ["state", "restarted", "state", "state", "done"]


def test_a_failing_parent_stops_its_running_children_before_it_restarts(
    coflow_backend: Any,
) -> None:
    def sleeper() -> FlowGenerator:
        yield receive()

    children: list[tuple[coflow.Runner, str]] = []

    def parent() -> FlowGenerator:
        if children:  # the second run: how is the first run's child now?
            earlier = children[0][0]
            children.append((earlier, earlier.status))
            return
        child = yield spawn(sleeper)
        children.append((child, child.status))
        yield get_state()
        raise RuntimeError("parent fails with a running child")

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor())
    assert runner.result(timeout=5) is None
    assert runner.restarts == 1
    (child, at_spawn), (same, at_restart) = children
    assert same is child
    assert at_spawn == "running"
    assert at_restart == "stopped"
    assert child.restarts == 0  # children are never supervised themselves


def test_a_failed_child_restarts_the_parent_not_itself(coflow_backend: Any) -> None:
    child_runs: list[int] = []
    parent_runs: list[int] = []

    def child() -> FlowGenerator:
        child_runs.append(1)
        yield get_state()
        raise LookupError("child failed")

    def parent() -> FlowGenerator:
        parent_runs.append(1)
        if len(parent_runs) == 1:
            yield call(child)
        yield set_state(lambda s: "recovered")

    sup = Supervisor()
    with sup:
        runner = coflow.start(parent, backend=coflow_backend)
    assert runner.result(timeout=5) == "recovered"
    assert runner.restarts == 1
    assert child_runs == [1]
    [failed_child] = runner.children()
    assert failed_child.status == "failed"
    assert failed_child.restarts == 0
    assert sup.children() == []


# The intensity limit


def test_failures_spaced_wider_than_max_seconds_keep_restarting(
    coflow_backend: Any, timeline: Timeline
) -> None:
    # One restart is allowed per 0.05 s window; failures come every 0.2 s.
    crashing = Crashing(failures=4, delay=0.2, timeline=timeline)
    sup = Supervisor(max_restarts=1, max_seconds=0.05)
    runner = coflow.start(crashing.flow, backend=coflow_backend, supervisor=sup)
    assert runner.result(timeout=5) == 1
    timeline.assert_matches(
        [
            (0.0, "start 0"),
            (0.2, "start 1"),
            (0.4, "start 2"),
            (0.6, "start 3"),
            (0.8, "start 4"),
        ]
    )
    assert runner.restarts == 4


def test_failures_closer_than_max_seconds_give_up(coflow_backend: Any, timeline: Timeline) -> None:
    crashing = Crashing(failures=4, delay=0.15, timeline=timeline)

    def on_event(event: Any) -> None:
        if isinstance(event, FlowError):
            timeline.log("gave up")

    sup = Supervisor(max_restarts=1, max_seconds=5.0)
    runner = coflow.start(crashing.flow, backend=coflow_backend, notify=on_event, supervisor=sup)
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    timeline.assert_matches([(0.0, "start 0"), (0.15, "start 1"), (0.3, "gave up")])
    assert runner.restarts == 1
    assert failed.value.__cause__ is crashing.errors[1]


def test_failures_spaced_far_apart_on_the_virtual_clock_restart_forever() -> None:
    backend = VirtualBackend()
    crashing = Crashing(failures=10_000, delay=3600.0)
    sup = Supervisor(max_restarts=1, max_seconds=5.0)
    runner = coflow.start(crashing.flow, backend=backend, supervisor=sup)
    backend.advance(3600.0 * 50 + 1)
    assert runner.status == "running"
    assert runner.restarts == 50
    assert sup.children() == [runner]
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result()
    assert runner.restarts == 50


def test_the_window_slides_on_the_virtual_clock() -> None:
    """Two restarts per 2 s: restarts older than 2 s stop counting."""
    backend = VirtualBackend()
    delays = [1.0, 1.0, 1.5, 0.25]
    times: list[tuple[float, str]] = []

    @coflow.flow(initial_state=None, name="sliding")
    def sliding() -> FlowGenerator:
        run_index = len(times)
        times.append((backend.now(), f"start {run_index}"))
        yield wait(delays[run_index])
        raise RuntimeError(f"crash {run_index}")

    def on_event(event: Any) -> None:
        if isinstance(event, FlowError):
            times.append((backend.now(), "gave up"))

    sup = Supervisor(max_restarts=2, max_seconds=2.0)
    runner = coflow.start(sliding, backend=backend, notify=on_event, supervisor=sup)
    with pytest.raises(FlowFailed) as failed:
        runner.result()
    # Fails at 1 and 2 (restarts 1, 2); at 3.5 the restart at 1 is 2.5 s old, so a
    # third restart is allowed; at 3.75 the restarts at 2 and 3.5 are both recent.
    assert times == [
        (0.0, "start 0"),
        (1.0, "start 1"),
        (2.0, "start 2"),
        (3.5, "start 3"),
        (3.75, "gave up"),
    ]
    assert runner.restarts == 3
    assert str(failed.value.__cause__) == "crash 3"


def test_max_restarts_zero_gives_up_at_the_first_failure(coflow_backend: Any) -> None:
    crashing = Crashing(failures=1)
    events: list[Any] = []
    sup = Supervisor(max_restarts=0)
    runner = coflow.start(
        crashing.flow, backend=coflow_backend, notify=events.append, supervisor=sup
    )
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert failed.value.__cause__ is crashing.errors[0]
    assert crashing.runs == 1
    assert runner.restarts == 0
    assert [describe(e) for e in events] == [("state", 1), ("error", crashing.errors[0])]
    assert any("gave up" in note for note in notes(crashing.errors[0]))


def test_a_flow_that_fails_at_once_runs_out_of_restarts_without_recursion(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[int] = []

    def instant() -> FlowGenerator:
        starts.append(1)
        raise RuntimeError("fails before its first step")
        yield  # a generator function  # pragma: no cover

    sup = Supervisor(max_restarts=2000, max_seconds=3600.0)
    with caplog.at_level(logging.CRITICAL, logger="coflow"):  # 2000 restart warnings
        runner = coflow.start(instant, backend=coflow_backend, supervisor=sup)
        with pytest.raises(FlowFailed) as failed:
            runner.result(timeout=5)
    assert not isinstance(failed.value.__cause__, RecursionError)
    assert str(failed.value.__cause__) == "fails before its first step"
    assert runner.restarts == 2000
    assert len(starts) == 2001
    assert runner.status == "failed"


@pytest.mark.parametrize("kind", ["generator function", "Flow", "step"])
def test_every_restartable_kind_of_flow_is_restarted(coflow_backend: Any, kind: str) -> None:
    starts: list[int] = []

    def crash(state: Any) -> Any:
        starts.append(1)
        raise RuntimeError("crash")

    def function() -> FlowGenerator:
        yield run(crash)

    flow: Any = {
        "generator function": function,
        "Flow": coflow.flow(function, initial_state=0),
        "step": run(crash),
    }[kind]
    runner = coflow.start(flow, backend=coflow_backend, supervisor=Supervisor(max_restarts=3))
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert runner.restarts == 3
    assert len(starts) == 4


# Stopping


@pytest.mark.parametrize("policy", ["transient", "permanent"])
def test_stop_ends_a_supervised_runner_stopped_without_a_restart(
    coflow_backend: Any, after: After, policy: str
) -> None:
    runs: list[int] = []

    def waiting() -> FlowGenerator:
        runs.append(1)
        yield wait_until(lambda s: False)

    events: list[Any] = []
    sup = Supervisor(restart=policy)
    runner = coflow.start(waiting, backend=coflow_backend, notify=events.append, supervisor=sup)
    after(0.05, runner.stop)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert runner.restarts == 0
    assert runs == [1]
    assert events == []
    assert sup.children() == []


def test_stop_after_restarts_ends_it_stopped(coflow_backend: Any) -> None:
    gate = Gate(coflow_backend)
    runs: list[int] = []

    def flaky() -> FlowGenerator:
        runs.append(1)
        if len(runs) <= 2:
            yield get_state()
            raise RuntimeError("flaky")
        gate.open()
        yield wait_until(lambda s: False)

    runner = coflow.start(flaky, backend=coflow_backend, supervisor=Supervisor())
    gate.wait()  # the third run is blocked
    assert runner.status == "running"
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert runner.restarts == 2
    assert len(runs) == 3


def test_stop_from_the_restarted_notify_ends_it_stopped(coflow_backend: Any) -> None:
    crashing = Crashing(failures=99)
    events: list[Any] = []

    def on_event(event: Any) -> None:
        events.append(event)
        if isinstance(event, FlowRestarted):
            event.runner.stop()

    runner = coflow.start(
        crashing.flow,
        backend=coflow_backend,
        notify=on_event,
        supervisor=Supervisor(max_restarts=5),
    )
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert runner.restarts == 1
    assert crashing.runs <= 2
    assert sum(isinstance(e, FlowRestarted) for e in events) == 1
    assert not any(isinstance(e, (FlowError, FlowDone)) for e in events)


def test_supervisor_stop_stops_every_runner_it_supervises(
    coflow_backend: Any, is_virtual: bool
) -> None:
    sup = Supervisor(restart="permanent")
    runners = [coflow.start(idle, backend=coflow_backend, supervisor=sup) for _ in range(3)]
    assert sup.children() == runners
    sup.stop()
    if is_virtual:  # stop() does not block: nothing has happened yet on the virtual clock
        assert [r.status for r in runners] == ["running"] * 3
    for runner in runners:
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
        assert runner.restarts == 0
    assert sup.children() == []


def test_supervisor_children_lists_running_ones_oldest_first_and_drops_ended_ones(
    coflow_backend: Any,
) -> None:
    gate = Gate(coflow_backend)

    def until_one() -> FlowGenerator:
        yield wait_until(lambda s: s == 1)

    restarted_runs: list[int] = []

    def restarted_once() -> FlowGenerator:
        restarted_runs.append(1)
        if len(restarted_runs) == 1:
            yield get_state()
            raise RuntimeError("first run fails")
        gate.open()
        yield wait_until(lambda s: False)

    sup = Supervisor()
    a = coflow.start(until_one, initial_state=0, backend=coflow_backend, supervisor=sup)
    b = coflow.start(until_one, initial_state=0, backend=coflow_backend, supervisor=sup)
    c = coflow.start(restarted_once, backend=coflow_backend, supervisor=sup)
    unsupervised = coflow.start(idle, backend=coflow_backend, supervisor=None)
    assert sup.children() == [a, b, c]

    b.signal(lambda s: 1)
    assert b.result(timeout=5) == 1
    assert sup.children() == [a, c]

    gate.wait()  # c has restarted and is running again: still listed, once
    assert c.restarts == 1
    assert sup.children() == [a, c]

    sup.stop()
    for runner in (a, c):
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
    assert sup.children() == []
    assert unsupervised.status == "running"
    unsupervised.stop()
    with pytest.raises(FlowStopped):
        unsupervised.result(timeout=5)


def test_a_runner_that_gave_up_leaves_the_children_list(coflow_backend: Any) -> None:
    sup = Supervisor(max_restarts=1)
    crashing = Crashing(failures=99)
    runner = coflow.start(crashing.flow, backend=coflow_backend, supervisor=sup)
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert sup.children() == []


# Which supervisor a start gets


def test_with_block_supervises_starts_inside_and_not_after(coflow_backend: Any) -> None:
    sup = Supervisor()
    with sup as entered:
        assert entered is sup
        inside = coflow.start(Crashing(failures=1).flow, backend=coflow_backend)
    after_block = coflow.start(Crashing(failures=1).flow, backend=coflow_backend)
    assert inside.result(timeout=5) == 1
    assert inside.restarts == 1
    with pytest.raises(FlowFailed):
        after_block.result(timeout=5)
    assert after_block.restarts == 0


def test_the_innermost_with_block_wins(coflow_backend: Any) -> None:
    outer, inner = Supervisor(), Supervisor()
    with outer:
        first = coflow.start(idle, backend=coflow_backend)
        with inner:
            second = coflow.start(idle, backend=coflow_backend)
        third = coflow.start(idle, backend=coflow_backend)
    assert outer.children() == [first, third]
    assert inner.children() == [second]
    outer.stop()
    inner.stop()
    for runner in (first, second, third):
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)


def test_explicit_supervisor_wins_over_the_ambient_one(coflow_backend: Any) -> None:
    ambient, explicit = Supervisor(), Supervisor()
    with ambient:
        runner = coflow.start(idle, backend=coflow_backend, supervisor=explicit)
    assert explicit.children() == [runner]
    assert ambient.children() == []
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)


def test_supervisor_none_opts_out_of_the_ambient_one(coflow_backend: Any) -> None:
    sup = Supervisor()
    crashing = Crashing(failures=1)
    with sup:
        runner = coflow.start(crashing.flow, backend=coflow_backend, supervisor=None)
    assert sup.children() == []
    with pytest.raises(FlowFailed):
        runner.result(timeout=5)
    assert runner.restarts == 0
    assert crashing.runs == 1


def test_the_ambient_supervisor_is_seen_from_an_asyncio_task_created_inside(
    coflow_backend: Any,
) -> None:
    sup = Supervisor()
    inside_flow, outside_flow = Crashing(failures=1), Crashing(failures=1)

    async def start_one(flow: Any) -> coflow.Runner:
        await asyncio.sleep(0)  # runs after the with block has been left
        return coflow.start(flow, backend=coflow_backend)

    async def main() -> tuple[coflow.Runner, coflow.Runner]:
        with sup:
            inside = asyncio.ensure_future(start_one(inside_flow.flow))
        outside = asyncio.ensure_future(start_one(outside_flow.flow))
        return await inside, await outside

    inside, outside = run_async(coflow_backend, main)
    assert inside.result(timeout=5) == 1
    assert inside.restarts == 1
    with pytest.raises(FlowFailed):
        outside.result(timeout=5)
    assert outside.restarts == 0
    assert outside_flow.runs == 1


def test_the_ambient_supervisor_is_not_seen_from_a_plain_thread(coflow_backend: Any) -> None:
    sup = Supervisor()
    started: list[coflow.Runner] = []
    with sup:
        thread = threading.Thread(
            target=lambda: started.append(coflow.start(idle, backend=coflow_backend))
        )
        thread.start()
        thread.join(timeout=5)
    [runner] = started
    assert sup.children() == []
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)


def test_an_installed_supervisor_is_seen_from_another_thread_until_uninstalled(
    coflow_backend: Any,
) -> None:
    sup = Supervisor()

    def start_in_a_thread(flow: Any) -> coflow.Runner:
        started: list[coflow.Runner] = []
        thread = threading.Thread(
            target=lambda: started.append(coflow.start(flow, backend=coflow_backend))
        )
        thread.start()
        thread.join(timeout=5)
        [runner] = started
        return runner

    installed_flow = Crashing(failures=1)
    assert sup.install() is sup
    try:
        supervised = start_in_a_thread(installed_flow.flow)
        here = coflow.start(idle, backend=coflow_backend)
        assert here in sup.children()
    finally:
        sup.uninstall()
    uninstalled_flow = Crashing(failures=1)
    unsupervised = start_in_a_thread(uninstalled_flow.flow)

    assert supervised.result(timeout=5) == 1
    assert supervised.restarts == 1
    with pytest.raises(FlowFailed):
        unsupervised.result(timeout=5)
    assert unsupervised.restarts == 0
    assert uninstalled_flow.runs == 1
    # Uninstalling keeps the runners it supervises.
    assert sup.children() == [here]
    sup.stop()
    with pytest.raises(FlowStopped):
        here.result(timeout=5)


def test_installing_a_second_supervisor_is_a_runtime_error() -> None:
    first, second = Supervisor(), Supervisor()
    first.install()
    try:
        with pytest.raises(RuntimeError):
            second.install()
    finally:
        first.uninstall()
    # Once the first is uninstalled, another may be installed.
    second.install()
    try:
        backend = VirtualBackend()
        runner = coflow.start(idle, backend=backend)
        assert second.children() == [runner]
        assert first.children() == []
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result()
    finally:
        second.uninstall()


def test_with_block_and_explicit_none_win_over_the_installed_supervisor(
    coflow_backend: Any,
) -> None:
    installed, ambient = Supervisor(), Supervisor()
    installed.install()
    try:
        with ambient:
            in_block = coflow.start(idle, backend=coflow_backend)
        opted_out = coflow.start(idle, backend=coflow_backend, supervisor=None)
        default = coflow.start(idle, backend=coflow_backend)
    finally:
        installed.uninstall()
    assert ambient.children() == [in_block]
    assert installed.children() == [default]
    for runner in (in_block, opted_out, default):
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)


def test_uninstall_leaves_no_installed_supervisor() -> None:
    sup = Supervisor()
    sup.install()
    sup.uninstall()
    runner = coflow.start(Crashing(failures=1).flow, backend="virtual")
    with pytest.raises(FlowFailed):
        runner.result()
    assert runner.restarts == 0
    assert sup.children() == []


# The supervisor's backend


def test_the_supervisors_backend_is_used_when_start_names_none(coflow_backend: Any) -> None:
    sup = Supervisor(backend=coflow_backend)
    explicit = coflow.start(Crashing(failures=1).flow, supervisor=sup)
    with sup:
        ambient = coflow.start(Crashing(failures=1).flow)
    for runner in (explicit, ambient):
        assert runner.backend is coflow_backend
        assert runner.result(timeout=5) == 1
        assert runner.restarts == 1


def test_a_backend_named_in_start_wins_over_the_supervisors() -> None:
    theirs, mine = VirtualBackend(), VirtualBackend()
    sup = Supervisor(backend=theirs)
    runner = coflow.start(Crashing(failures=1).flow, backend=mine, supervisor=sup)
    assert runner.backend is mine
    assert runner.result() == 1
    assert runner.restarts == 1


def test_a_supervisor_with_a_backend_name_runs_on_that_kind_of_backend() -> None:
    def an_hour_then_crash() -> FlowGenerator:
        yield wait(3600)
        yield set_state(lambda s: (s or 0) + 1)
        raise RuntimeError("after an hour")

    sup = Supervisor(backend="virtual", max_restarts=2, max_seconds=24 * 3600)
    runner = coflow.start(an_hour_then_crash, supervisor=sup)
    assert isinstance(runner.backend, VirtualBackend)
    with pytest.raises(FlowFailed):
        runner.result()  # three virtual hours, no real waiting
    assert runner.backend.now() == 3 * 3600
    assert runner.restarts == 2


# Bad arguments


def test_unknown_restart_policy_is_a_value_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError) as excinfo:
        Supervisor(restart="sometimes")
    message = str(excinfo.value)
    assert "sometimes" in message
    for valid in ("permanent", "transient", "temporary"):
        assert repr(valid) in message


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_restarts": "3"}, TypeError),
        ({"max_restarts": 3.0}, TypeError),
        ({"max_restarts": None}, TypeError),
        ({"max_restarts": True}, TypeError),
        ({"max_restarts": -1}, ValueError),
        ({"max_seconds": "5"}, TypeError),
        ({"max_seconds": None}, TypeError),
        ({"max_seconds": 0}, ValueError),
        ({"max_seconds": 0.0}, ValueError),
        ({"max_seconds": -1.0}, ValueError),
        ({"max_seconds": math.inf}, ValueError),
        ({"max_seconds": math.nan}, ValueError),
    ],
    ids=repr,
)
def test_bad_limits_are_rejected(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as excinfo:
        Supervisor(**kwargs)
    [(name, _)] = kwargs.items()
    assert name in str(excinfo.value)


def test_good_limits_are_accepted() -> None:
    sup = Supervisor(restart="permanent", max_restarts=0, max_seconds=1)
    assert (sup.restart, sup.max_restarts, sup.max_seconds) == ("permanent", 0, 1.0)
    default = Supervisor()
    assert (default.restart, default.max_restarts, default.max_seconds) == ("transient", 3, 5.0)


@pytest.mark.parametrize("bad", ["x", 42, Supervisor, object()], ids=repr)
def test_supervisor_argument_of_the_wrong_type_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        coflow.start(idle, backend="virtual", supervisor=bad)


def test_a_supervised_start_of_a_generator_object_is_a_type_error() -> None:
    sup = Supervisor()
    with pytest.raises(TypeError) as excinfo:
        coflow.start(idle(), backend="virtual", supervisor=sup)
    assert "generator" in str(excinfo.value)
    with sup, pytest.raises(TypeError):
        coflow.start(idle(), backend="virtual")
    assert sup.children() == []
    # Unsupervised, a generator object runs once as usual, even inside the block.
    with sup:
        runner = coflow.start(idle(), backend="virtual", supervisor=None)
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result()


# Refs across restarts


def test_call_with_ref_after_a_restart_returns_the_result_without_running_the_child_again(
    coflow_backend: Any,
) -> None:
    payments: list[int] = []
    receipts: list[Any] = []

    def payment() -> FlowGenerator:
        payments.append(1)
        yield set_state(lambda s: {"paid": 42})

    @coflow.flow(initial_state="new", name="order")
    def order() -> FlowGenerator:
        first_run = not receipts
        receipts.append((yield call(payment, ref="pay")))
        yield set_state(lambda s: "paid")
        if first_run:
            raise RuntimeError("crashed after paying")

    runner = coflow.start(order, backend=coflow_backend, supervisor=Supervisor())
    assert runner.result(timeout=5) == "paid"
    assert runner.restarts == 1
    assert payments == [1]
    assert receipts == [{"paid": 42}, {"paid": 42}]
    [child] = runner.children()
    assert child.status == "done"


def test_call_without_ref_after_a_restart_runs_the_child_again(coflow_backend: Any) -> None:
    payments: list[int] = []

    def payment() -> FlowGenerator:
        payments.append(1)
        yield set_state(lambda s: "paid")

    def order() -> FlowGenerator:
        yield call(payment)
        if len(payments) == 1:
            raise RuntimeError("crashed after paying")

    runner = coflow.start(order, backend=coflow_backend, supervisor=Supervisor())
    assert runner.result(timeout=5) is None
    assert payments == [1, 1]
    assert [c.status for c in runner.children()] == ["done", "done"]


def test_call_with_ref_of_a_child_that_failed_raises_at_once_after_a_restart(
    coflow_backend: Any,
) -> None:
    child_runs: list[LookupError] = []
    caught: list[BaseException | None] = []

    def broken() -> FlowGenerator:
        error = LookupError(f"child failure {len(child_runs)}")
        child_runs.append(error)
        yield get_state()
        raise error

    def parent() -> FlowGenerator:
        if not child_runs:
            yield call(broken, ref="b")  # fails the parent
        try:
            yield call(broken, ref="b")
        except ChildFailed as failed:
            caught.append(failed.__cause__)

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor())
    assert runner.result(timeout=5) is None
    assert runner.restarts == 1
    assert len(child_runs) == 1
    assert caught == [child_runs[0]]


def test_spawn_with_ref_after_a_restart_returns_the_child_that_finished(
    coflow_backend: Any,
) -> None:
    worker_runs: list[int] = []
    parent_handle: list[coflow.Runner] = []
    seen: list[tuple[coflow.Runner, str]] = []

    def worker() -> FlowGenerator:
        worker_runs.append(1)
        yield set_state(lambda s: "worked")

    def tell_parent(event: Any) -> None:
        if isinstance(event, FlowDone):
            parent_handle[0].send("worker done")

    def parent() -> FlowGenerator:
        first_run = not seen
        if first_run:
            yield receive(match=lambda m: m == "go")
        child = yield spawn(worker, ref="w", notify=tell_parent)
        seen.append((child, child.status))
        if first_run:
            yield receive(match=lambda m: m == "worker done")
            raise RuntimeError("crashed after the worker finished")

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor())
    parent_handle.append(runner)
    runner.send("go")
    assert runner.result(timeout=5) is None
    assert runner.restarts == 1
    assert worker_runs == [1]
    (first, status_first), (second, status_second) = seen
    assert second is first
    assert (status_first, status_second) == ("running", "done")
    assert first.get_state() == "worked"
    assert runner.children() == [first]


def test_spawn_with_ref_after_a_permanent_restart_returns_the_running_child(
    coflow_backend: Any,
) -> None:
    sleeper_runs: list[int] = []
    seen: list[tuple[coflow.Runner, str]] = []
    crash = RuntimeError("second run fails")

    def sleeper() -> FlowGenerator:
        sleeper_runs.append(1)
        yield receive()

    def parent() -> FlowGenerator:
        child = yield spawn(sleeper, ref="s")
        seen.append((child, child.status))
        if len(seen) == 2:
            raise crash
        # The first run ends normally: its spawned child goes on running.

    sup = Supervisor(restart="permanent", max_restarts=1)
    runner = coflow.start(parent, backend=coflow_backend, supervisor=sup)
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert failed.value.__cause__ is crash
    assert runner.restarts == 1
    (first, status_first), (second, status_second) = seen
    assert second is first
    assert (status_first, status_second) == ("running", "running")
    assert sleeper_runs == [1]
    # The parent failed for good, so its running child was stopped before it reported failed.
    assert first.status == "stopped"


def test_a_permanent_parent_that_gives_up_after_a_normal_end_stops_its_running_children(
    coflow_backend: Any,
) -> None:
    spawned: list[coflow.Runner] = []

    def sleeper() -> FlowGenerator:
        yield receive()

    def parent() -> FlowGenerator:
        spawned.append((yield spawn(sleeper, ref="s")))

    sup = Supervisor(restart="permanent", max_restarts=1)
    runner = coflow.start(parent, backend=coflow_backend, supervisor=sup)
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert "kept ending" in str(failed.value.__cause__)
    assert len(spawned) == 2
    assert spawned[0] is spawned[1]
    child = spawned[0]
    try:
        # A parent that fails stops its running children, and reports failed after they ended.
        assert child.status == "stopped"
    finally:
        child.stop()
        with pytest.raises(FlowStopped):
            child.result(timeout=5)


# Logging


def test_restarts_log_warnings_and_giving_up_logs_an_error(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    crashing = Crashing(failures=99, name="flaky import")
    sup = Supervisor(max_restarts=2)
    with caplog.at_level(logging.WARNING, logger="coflow"):
        runner = coflow.start(crashing.flow, backend=coflow_backend, supervisor=sup)
        with pytest.raises(FlowFailed):
            runner.result(timeout=5)

    records = [r for r in caplog.records if r.name == "coflow"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(warnings) == 2, records
    assert len(errors) == 1, records
    for record in warnings + errors:
        assert "flaky import" in record.getMessage()
    for record, error in zip(warnings, crashing.errors):
        assert str(error) in record.getMessage() or (
            record.exc_info is not None and record.exc_info[1] is error
        )
    assert "gave up" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[1] is crashing.errors[-1]
    assert records.index(errors[0]) == len(records) - 1
