"""``coflow.testing.lasting(seconds, fn)``: work that takes time, on every backend.

On the virtual clock work runs inline and takes no time; lasting work gives
it a duration, so signals land while it runs and an attempt's timeout fires,
at exact times.  On the real backends the same tests hold within the usual
tolerance.
"""

from __future__ import annotations

from typing import Any

import pytest
from book_sync import push_with_ok, push_with_update, sync_book

import coflow
from coflow import (
    FlowFailed,
    FlowGenerator,
    FlowTimeout,
    Ok,
    race,
    run,
    set_state,
)
from coflow.backends.virtual import VirtualBackend
from coflow.testing import After, Timeline, lasting


def test_the_outcome_of_lasting_work_arrives_after_its_duration(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def push(state: int) -> Ok[int]:
        timeline.log("push starts")
        return Ok(state + 1)

    @coflow.flow(initial_state=0)
    def once() -> FlowGenerator:
        yield run(lasting(0.3, push))
        timeline.log("pushed")

    assert coflow.start(once, backend=coflow_backend).result(timeout=5) == 1
    timeline.assert_matches([(0.0, "push starts"), (0.3, "pushed")])


def test_an_attempt_of_lasting_work_times_out(coflow_backend: Any, timeline: Timeline) -> None:
    @coflow.flow(initial_state=0)
    def impatient() -> FlowGenerator:
        try:
            yield run(lasting(0.3, lambda s: Ok(s + 1)), timeout=0.1)
        except FlowTimeout:
            timeline.log("timed out")

    assert coflow.start(impatient, backend=coflow_backend).result(timeout=5) == 0
    timeline.assert_matches([(0.1, "timed out")])


def test_retries_of_lasting_work_each_take_their_duration(
    coflow_backend: Any, timeline: Timeline
) -> None:
    attempts = []

    def flaky(state: int) -> Ok[int]:
        attempts.append(state)
        timeline.log(f"attempt {len(attempts)}")
        if len(attempts) < 3:
            raise ConnectionError("down")
        return Ok(state + 1)

    @coflow.flow(initial_state=0)
    def retrying() -> FlowGenerator:
        yield run(lasting(0.1, flaky), retries=2, backoff="constant", base_delay=0.05)

    assert coflow.start(retrying, backend=coflow_backend).result(timeout=5) == 1
    timeline.assert_matches([(0.0, "attempt 1"), (0.15, "attempt 2"), (0.3, "attempt 3")])


def test_the_shorter_lasting_work_wins_a_race(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={})
    def racing() -> FlowGenerator:
        winner = yield race([lasting(0.3, lambda: "slow"), lasting(0.1, lambda: "fast")])
        yield set_state(lambda s: {"winner": winner})

    assert coflow.start(racing, backend=coflow_backend).result(timeout=5) == {"winner": "fast"}


def test_a_stop_ends_lasting_work_at_once(
    coflow_backend: Any, after: After, tolerance: float
) -> None:
    @coflow.flow(initial_state=0)
    def long_push() -> FlowGenerator:
        yield run(lasting(60, lambda s: Ok(s + 1)))

    runner = coflow.start(long_push, backend=coflow_backend)
    started = coflow_backend.now()
    after(0.1, runner.stop)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert coflow_backend.now() - started == pytest.approx(0.1, abs=tolerance or 1e-9)


def test_an_error_of_lasting_work_also_waits_for_its_duration(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def broken(state: int) -> Ok[int]:
        raise ValueError("rejected")

    @coflow.flow(initial_state=0)
    def failing() -> FlowGenerator:
        try:
            yield run(lasting(0.2, broken))
        finally:
            timeline.log("failed")

    with pytest.raises(FlowFailed):
        coflow.start(failing, backend=coflow_backend).result(timeout=5)
    timeline.assert_matches([(0.2, "failed")])


# The flagship flow's lost edit, made visible by work that takes time.


def _edit_during_the_push(push: Any) -> list[str]:
    backend = VirtualBackend()
    runner = coflow.start(sync_book(lasting(0.3, push)), backend=backend)
    runner.signal(lambda s: {**s, "dirty": True, "text": "first"})
    # The push starts 0.5 s after the edit and lasts 0.3 s: this edit lands during it.
    backend.advance(0.65)
    assert runner.get_state()["dirty"] == "processing"
    runner.signal(lambda s: {**s, "dirty": True, "text": "second"})
    backend.advance(60)
    pushed: list[str] = runner.get_state()["pushed"]
    runner.stop()
    return pushed


def test_an_edit_made_during_a_lasting_push_is_pushed_after_it_with_update() -> None:
    assert _edit_during_the_push(push_with_update) == ["first", "second"]


def test_an_edit_made_during_a_lasting_push_is_lost_with_the_old_ok_pattern() -> None:
    # What the virtual clock could not show while work took no time: the edit is overwritten.
    assert _edit_during_the_push(push_with_ok) == ["first"]


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_lasting_refuses_a_bad_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="lasting: seconds"):
        lasting(seconds, lambda: None)


def test_lasting_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match=r"lasting\(0.1, \.\.\.\): fn must be callable, got 42"):
        lasting(0.1, 42)  # type: ignore[arg-type]


def test_lasting_work_reads_as_itself_and_calls_through() -> None:
    def push(state: int) -> int:
        return state + 1

    work = lasting(0.25, push)
    assert (
        repr(work)
        == "lasting(0.25, test_lasting_work_reads_as_itself_and_calls_through.<locals>.push)"
    )
    assert work(1) == 2
