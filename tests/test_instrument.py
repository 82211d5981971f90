"""Instruments: every hook, in order, on every backend; raising hooks; supervisor scope."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import coflow
from coflow import Cancelled, FlowGenerator, Instrument, Ok, Supervisor


class Recorder(Instrument):
    """Records the hooks of the runners named in ``names`` as ``(hook, name, detail...)``."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _add(self, runner: coflow.Runner, *event: Any) -> None:
        if not self.names or runner.name in self.names:
            with self.lock:
                self.events.append((event[0], runner.name, *event[1:]))

    def runner_started(self, runner: coflow.Runner, now: float) -> None:
        self._add(runner, "runner_started")

    def runner_ended(self, runner: coflow.Runner, now: float) -> None:
        self._add(runner, "runner_ended", runner.status, type(runner.error).__name__)

    def step_began(self, runner: coflow.Runner, step: Any, now: float) -> None:
        self._add(runner, "began", _kind(step))

    def step_blocked(self, runner: coflow.Runner, step: Any, now: float) -> None:
        self._add(runner, "blocked", _kind(step))

    def step_woken(self, runner: coflow.Runner, step: Any, now: float) -> None:
        self._add(runner, "woken", _kind(step))

    def step_ended(
        self, runner: coflow.Runner, step: Any, error: BaseException | None, now: float
    ) -> None:
        self._add(runner, "ended", _kind(step), type(error).__name__)

    def work_started(self, runner: coflow.Runner, step: Any, attempt: int, now: float) -> None:
        self._add(runner, "work_started", _kind(step), attempt)

    def work_ended(
        self,
        runner: coflow.Runner,
        step: Any,
        attempt: int,
        error: BaseException | None,
        now: float,
    ) -> None:
        self._add(runner, "work_ended", _kind(step), attempt, type(error).__name__)

    def retry(
        self,
        runner: coflow.Runner,
        step: Any,
        attempt: int,
        delay: float,
        error: BaseException,
        now: float,
    ) -> None:
        self._add(runner, "retry", _kind(step), attempt, delay, type(error).__name__)

    def restarted(self, runner: coflow.Runner, reason: BaseException | None, now: float) -> None:
        self._add(runner, "restarted", type(reason).__name__)


def _kind(step: Any) -> str:
    return type(step).__name__


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    coflow.add_instrument(recorder)
    try:
        yield recorder
    finally:
        coflow.remove_instrument(recorder)


def mine(recorder: Recorder, name: str) -> list[tuple[Any, ...]]:
    return [event for event in recorder.events if event[1] == name]


def test_wait_set_state_and_a_run_that_retries(coflow_backend: Any, recorder: Recorder) -> None:
    calls = []

    def flaky(state: int) -> Ok[int]:
        calls.append(state)
        if len(calls) < 3:
            raise ValueError("not yet")
        return Ok(state + 10)

    def steps() -> Any:
        yield coflow.wait(0.01)
        yield coflow.set_state(lambda count: count + 1)
        yield coflow.run(flaky, retries=3, base_delay=0.01)

    runner = coflow.start(steps, initial_state=0, backend=coflow_backend, name="retrying")
    assert runner.result(timeout=10) == 11
    work = [
        ("blocked", "retrying", "Run"),
        ("work_ended", "retrying", "Run", 1, "ValueError"),
        ("woken", "retrying", "Run"),
    ]
    assert mine(recorder, "retrying") == [
        ("runner_started", "retrying"),
        ("began", "retrying", "Wait"),
        ("blocked", "retrying", "Wait"),
        ("woken", "retrying", "Wait"),
        ("ended", "retrying", "Wait", "NoneType"),
        ("began", "retrying", "SetState"),
        ("ended", "retrying", "SetState", "NoneType"),
        ("began", "retrying", "Run"),
        ("work_started", "retrying", "Run", 1),
        *work,
        ("retry", "retrying", "Run", 1, 0.01, "ValueError"),
        ("blocked", "retrying", "Run"),
        ("woken", "retrying", "Run"),
        ("work_started", "retrying", "Run", 2),
        ("blocked", "retrying", "Run"),
        ("work_ended", "retrying", "Run", 2, "ValueError"),
        ("woken", "retrying", "Run"),
        ("retry", "retrying", "Run", 2, 0.01, "ValueError"),
        ("blocked", "retrying", "Run"),
        ("woken", "retrying", "Run"),
        ("work_started", "retrying", "Run", 3),
        ("blocked", "retrying", "Run"),
        ("work_ended", "retrying", "Run", 3, "NoneType"),
        ("woken", "retrying", "Run"),
        ("ended", "retrying", "Run", "NoneType"),
        ("runner_ended", "retrying", "done", "NoneType"),
    ]


def test_a_failing_step(coflow_backend: Any, recorder: Recorder) -> None:
    def boom(state: Any) -> Any:
        raise KeyError("boom")

    def failing() -> Any:
        yield coflow.set_state(boom)

    runner = coflow.start(failing, backend=coflow_backend, name="failing")
    with pytest.raises(coflow.FlowFailed):
        runner.result(timeout=10)
    assert mine(recorder, "failing") == [
        ("runner_started", "failing"),
        ("began", "failing", "SetState"),
        ("ended", "failing", "SetState", "KeyError"),
        ("runner_ended", "failing", "failed", "KeyError"),
    ]


def test_an_instrumented_failure_reads_like_nested_calls(
    coflow_backend: Any, recorder: Recorder
) -> None:
    def explode(state: Any) -> Any:
        raise ConnectionError("down")

    def inner() -> Any:
        yield coflow.wait(0.01)
        yield coflow.set_state(explode)

    def outer() -> Any:
        yield inner()

    runner = coflow.start(outer, backend=coflow_backend, name="nested")
    with pytest.raises(coflow.FlowFailed) as excinfo:
        runner.result(timeout=10)
    reason = excinfo.value.__cause__
    assert reason is not None
    frames = [frame.name for frame in traceback.extract_tb(reason.__traceback__)]
    assert "drive" not in frames  # neither step loop is part of the story
    assert frames.index("outer") < frames.index("inner") < frames.index("explode")


def test_a_stop_cancels_the_blocked_step(coflow_backend: Any, recorder: Recorder) -> None:
    def forever() -> Any:
        yield coflow.wait_until(lambda state: False)

    runner = coflow.start(forever, backend=coflow_backend, name="stopped")
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=10)
    events = mine(recorder, "stopped")
    assert events[-2:] == [
        ("ended", "stopped", "WaitUntil", Cancelled.__name__),
        ("runner_ended", "stopped", "stopped", "NoneType"),
    ]
    assert ("began", "stopped", "WaitUntil") in events


def test_a_child_call(coflow_backend: Any, recorder: Recorder) -> None:
    @coflow.flow(name="child")
    def child() -> Any:
        yield coflow.wait(0.01)

    @coflow.flow(name="parent")
    def parent() -> Any:
        yield coflow.call(child)

    runner = coflow.start(parent, backend=coflow_backend)
    runner.result(timeout=10)
    names = [(event[0], event[1]) for event in recorder.events]
    assert names == [
        ("runner_started", "parent"),
        ("began", "parent"),
        ("runner_started", "child"),
        ("began", "child"),
        ("blocked", "child"),
        ("blocked", "parent"),
        ("woken", "child"),
        ("ended", "child"),
        ("runner_ended", "child"),
        ("woken", "parent"),
        ("ended", "parent"),
        ("runner_ended", "parent"),
    ]


def test_a_parallel_callable_is_work_of_attempt_one(
    coflow_backend: Any, recorder: Recorder
) -> None:
    def both() -> Any:
        yield coflow.parallel([lambda: 1, lambda: 2])

    coflow.start(both, backend=coflow_backend, name="both").result(timeout=10)
    work = [event for event in mine(recorder, "both") if event[0].startswith("work")]
    assert sorted(work) == [
        ("work_ended", "both", "Parallel", 1, "NoneType"),
        ("work_ended", "both", "Parallel", 1, "NoneType"),
        ("work_started", "both", "Parallel", 1),
        ("work_started", "both", "Parallel", 1),
    ]


def test_a_supervisor_restart(coflow_backend: Any) -> None:
    recorder = Recorder()
    supervisor = Supervisor(backend=coflow_backend, instruments=(recorder,), max_restarts=1)
    runs = []

    def once_failing() -> Any:
        runs.append(1)
        yield coflow.set_state(lambda state: state)
        if len(runs) == 1:
            raise RuntimeError("first run")

    runner = supervisor.start(once_failing, name="restarting")
    runner.result(timeout=10)
    assert mine(recorder, "restarting") == [
        ("runner_started", "restarting"),
        ("began", "restarting", "SetState"),
        ("ended", "restarting", "SetState", "NoneType"),
        ("restarted", "restarting", "RuntimeError"),
        ("began", "restarting", "SetState"),
        ("ended", "restarting", "SetState", "NoneType"),
        ("runner_ended", "restarting", "done", "NoneType"),
    ]


def test_supervisor_instruments_see_only_its_runners_and_their_children(
    coflow_backend: Any,
) -> None:
    recorder = Recorder()
    supervisor = Supervisor(backend=coflow_backend)
    supervisor.add_instrument(recorder)

    @coflow.flow(name="kid")
    def kid() -> Any:
        yield coflow.set_state(lambda state: state)

    @coflow.flow(name="mine")
    def supervised() -> Any:
        yield coflow.call(kid)

    @coflow.flow(name="other")
    def other() -> Any:
        yield coflow.call(kid)

    supervisor.start(supervised).result(timeout=10)
    coflow.start(other, backend=coflow_backend, supervisor=None).result(timeout=10)
    assert {event[1] for event in recorder.events} == {"mine", "kid"}
    assert recorder.events.count(("runner_started", "kid")) == 1
    supervisor.remove_instrument(recorder)
    before = len(recorder.events)
    supervisor.start(supervised).result(timeout=10)
    assert len(recorder.events) == before


def test_a_raising_hook_is_logged_and_removed(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Instrument):
        calls = 0

        def step_began(self, runner: coflow.Runner, step: Any, now: float) -> None:
            Broken.calls += 1
            raise ZeroDivisionError("broken hook")

    broken = Broken()
    coflow.add_instrument(broken)
    try:

        def steps() -> Any:
            yield coflow.set_state(lambda count: count + 1)
            yield coflow.set_state(lambda count: count + 1)

        with caplog.at_level(logging.ERROR, logger="coflow"):
            runner = coflow.start(steps, initial_state=0, backend=coflow_backend)
            assert runner.result(timeout=10) == 2
    finally:
        with pytest.raises(ValueError):
            coflow.remove_instrument(broken)  # already removed
    assert Broken.calls == 1
    logged = [record for record in caplog.records if "step_began" in record.getMessage()]
    assert len(logged) == 1 and "Broken" in logged[0].getMessage()


@pytest.mark.plain_step_loop
def test_an_uninstrumented_runner_keeps_the_plain_step_loop() -> None:
    from coflow._scheduler import Task

    runner = coflow.start(coflow.wait(1.0), backend="virtual")
    assert type(runner.root) is Task
    runner.stop()


def test_add_instrument_refuses_what_is_no_instrument() -> None:
    with pytest.raises(TypeError):
        coflow.add_instrument(object())  # type: ignore[arg-type]


def test_a_child_flow_is_a_child_already_when_its_start_is_reported(
    virtual_backend: Any,
) -> None:
    parents: dict[str, Any] = {}

    class Parents(coflow.Instrument):
        def runner_started(self, runner: coflow.Runner, now: float) -> None:
            parents[runner.name] = runner.parent

    def child() -> FlowGenerator:
        yield coflow.set_state(lambda state: "done")

    def parent() -> FlowGenerator:
        yield coflow.call(child)

    instrument = Parents()
    coflow.add_instrument(instrument)
    try:
        runner = coflow.start(parent, backend=virtual_backend)
        runner.result()
    finally:
        coflow.remove_instrument(instrument)
    assert parents == {"parent": None, "child": runner}
