"""Structured cancellation (SPEC §3): how ``stop()`` ends a flow and everything it started.

``Cancelled`` is raised at the suspended ``yield``, innermost flows first; ``finally``
blocks may yield cleanup steps, which run to completion; the cancellation is over only
when all cleanup is.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, Ok, get_state, parallel, run, set_state, wait, wait_until
from coflow.testing import After, Timeline


def test_stop_while_waiting(coflow_backend: Any, after: After) -> None:
    """Caravela-missing case "stop while waiting"."""
    events: list[Any] = []

    def main() -> FlowGenerator:
        yield set_state(lambda s: {**s, "started": True})
        yield wait_until(lambda s: s["go"])
        yield set_state(lambda s: {**s, "finished": True})

    runner = coflow.start(
        main,
        initial_state={"started": False, "go": False},
        notify=events.append,
        backend=coflow_backend,
    )

    def stop() -> None:
        events.append("stop requested")
        runner.stop()

    after(0.1, stop)

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert runner.get_state() == {"started": True, "go": False}
    assert events[-1] == "stop requested", "no notify event after the stop"
    states = [event.state for event in events if isinstance(event, coflow.FlowState)]
    assert states[-1] == {"started": True, "go": False}
    assert not any(isinstance(event, (coflow.FlowDone, coflow.FlowError)) for event in events)


def test_a_stopped_flow_sends_no_events_even_when_its_cleanup_changes_state(
    coflow_backend: Any, after: After
) -> None:
    events: list[Any] = []

    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            yield set_state(lambda s: {**s, "released": True})

    runner = coflow.start(
        main, initial_state={"released": False}, notify=events.append, backend=coflow_backend
    )

    def stop() -> None:
        events.append("stop requested")
        runner.stop()

    after(0.1, stop)

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.get_state() == {"released": True}, "the cleanup ran"
    assert events[-1] == "stop requested", events


def test_cancelled_is_a_base_exception_that_except_exception_does_not_catch(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    assert issubclass(coflow.Cancelled, BaseException)
    assert not issubclass(coflow.Cancelled, Exception)

    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        except Exception:
            timeline.log("swallowed by except Exception")
        except coflow.Cancelled:
            timeline.log("saw Cancelled")
            raise
        timeline.log("went on")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.stop())

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    timeline.assert_matches([(0.1, "saw Cancelled")])


def test_cleanup_steps_run_to_completion_and_are_not_cancelled_again(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def release(state: dict[str, Any]) -> Ok[dict[str, Any]]:
        timeline.log("release")
        return Ok({**state, "released": True})

    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        except coflow.Cancelled:
            timeline.log("cancelled")
            yield run(release)
            raise
        finally:
            timeline.log("cleanup starts")
            yield wait(0.1)
            timeline.log("cleanup halfway")
            yield wait(0.1)
            timeline.log("cleanup ends")

    runner = coflow.start(main, initial_state={"released": False}, backend=coflow_backend)
    after(0.1, lambda: runner.stop())
    # Stopping again while the cleanup runs must not interrupt it.
    after(0.15, lambda: runner.stop())
    after(0.25, lambda: runner.stop())

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.get_state() == {"released": True}
    timeline.assert_matches(
        [
            (0.1, "cancelled"),
            (0.1, "release"),
            (0.1, "cleanup starts"),
            (0.2, "cleanup halfway"),
            (0.3, "cleanup ends"),
        ]
    )


def test_sub_flows_are_cancelled_before_the_flows_that_contain_them(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def nested(depth: int) -> FlowGenerator:
        try:
            if depth == 0:
                yield wait(1.0)
            else:
                yield nested(depth - 1)
        finally:
            timeline.log(f"finally at depth {depth}")

    def main() -> FlowGenerator:
        try:
            yield nested(2)
        finally:
            timeline.log("main finally")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.stop())

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.1, "finally at depth 0"),
            (0.1, "finally at depth 1"),
            (0.1, "finally at depth 2"),
            (0.1, "main finally"),
        ]
    )


def test_parallel_branches_are_cancelled_last_started_first(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def worker(label: str) -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            timeline.log(f"{label} finally")

    def main() -> FlowGenerator:
        try:
            yield parallel([worker("first"), worker("second"), worker("third")])
        finally:
            timeline.log("main finally")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.stop())

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.1, "third finally"),
            (0.1, "second finally"),
            (0.1, "first finally"),
            (0.1, "main finally"),
        ]
    )


def test_stop_is_idempotent(coflow_backend: Any, timeline: Timeline, after: After) -> None:
    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            timeline.log("cleanup")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    def stop_twice() -> None:
        runner.stop()
        runner.stop()

    after(0.1, stop_twice)

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    runner.stop()
    assert runner.status == "stopped"
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    timeline.assert_matches([(0.1, "cleanup")])


def test_stop_reports_stopped_only_after_the_cleanup(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    status_right_after_stop: list[str] = []

    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            timeline.log("cleanup starts")
            yield wait(0.2)
            timeline.log("cleanup ends")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    def stop() -> None:
        runner.stop()
        status_right_after_stop.append(runner.status)

    after(0.1, stop)
    after(0.2, lambda: timeline.log(("status during cleanup", runner.status)))

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert status_right_after_stop == ["running"]
    timeline.assert_matches(
        [
            (0.1, "cleanup starts"),
            (0.2, ("status during cleanup", "running")),
            (0.3, "cleanup ends"),
        ]
    )


def _mentions(error: BaseException | None, wanted: type[BaseException], seen: set[int]) -> bool:
    """Whether ``wanted`` is ``error`` or is attached to it (cause, context, notes, group)."""
    if error is None or id(error) in seen:
        return False
    seen.add(id(error))
    if isinstance(error, wanted):
        return True
    notes = getattr(error, "__notes__", ())
    if any(wanted.__name__ in note for note in notes):
        return True
    nested = list(getattr(error, "exceptions", ()))
    nested += [error.__cause__, error.__context__]
    return any(_mentions(inner, wanted, seen) for inner in nested)


def test_an_error_in_cleanup_is_reported_but_never_replaces_the_original_error(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []

    def failing() -> FlowGenerator:
        yield wait(0.1)
        raise ValueError("the original error")

    def sibling() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            yield set_state(lambda s: {**s, "sibling cleanup ran": True})
            raise KeyError("cleanup broke")

    def main() -> FlowGenerator:
        yield parallel([sibling, failing])

    runner = coflow.start(main, initial_state={}, notify=events.append, backend=coflow_backend)

    with caplog.at_level(logging.DEBUG), pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, ValueError)
    assert failed.value.__cause__.args == ("the original error",)
    assert runner.status == "failed"
    assert runner.get_state() == {"sibling cleanup ran": True}
    # Logged ...
    assert any(
        "cleanup broke" in record.getMessage()
        or (record.exc_info is not None and isinstance(record.exc_info[1], KeyError))
        for record in caplog.records
    ), caplog.records
    # ... and on FlowError, whose final event still carries the original error.
    flow_errors = [event for event in events if isinstance(event, coflow.FlowError)]
    assert flow_errors, events
    assert isinstance(events[-1], coflow.FlowError)
    assert isinstance(events[-1].reason, ValueError)
    assert any(_mentions(event.reason, KeyError, set()) for event in flow_errors), flow_errors


def test_an_error_in_cleanup_after_a_stop_leaves_the_flow_stopped(
    coflow_backend: Any, after: After, caplog: pytest.LogCaptureFixture
) -> None:
    def main() -> FlowGenerator:
        try:
            yield wait(1.0)
        finally:
            yield get_state()
            raise KeyError("cleanup broke")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)
    after(0.1, lambda: runner.stop())

    with caplog.at_level(logging.DEBUG), pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert any(
        "cleanup broke" in record.getMessage()
        or (record.exc_info is not None and isinstance(record.exc_info[1], KeyError))
        for record in caplog.records
    ), caplog.records


def test_stop_cancels_in_flight_run_work(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def flaky(state: Any) -> None:
        timeline.log("attempt")
        raise ConnectionError("service down")

    def main() -> FlowGenerator:
        try:
            yield run(flaky, retries=5, base_delay=0.1)
        finally:
            timeline.log("cleanup")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)
    after(0.15, lambda: runner.stop())
    # Keep the clock going past the retries that would have come next (0.2, 0.3).
    probe = after(0.35, lambda: timeline.log("probe"))

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    probe.result(timeout=5)
    timeline.assert_matches(
        [(0.0, "attempt"), (0.1, "attempt"), (0.15, "cleanup"), (0.35, "probe")]
    )
