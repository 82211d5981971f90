"""run(fn, ...): call fn(state) as backend work; its result shape decides what happens next."""

from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any

import pytest

import coflow
from coflow import (
    Error,
    FlowFailed,
    FlowGenerator,
    FlowTimeout,
    Ok,
    RetriesExhausted,
    Retry,
    RetryPolicy,
    StepFailed,
    run,
    set_state,
)
from coflow.testing import After


def run_once(backend: Any, step: Any, initial_state: Any = None) -> tuple[Any, list[Any]]:
    """Run a flow that yields ``step`` once; return the final state and what the yield gave."""
    results: list[Any] = []

    def body() -> FlowGenerator:
        results.append((yield step))

    runner = coflow.start(body, initial_state=initial_state, backend=backend)
    return runner.result(timeout=5), results


def catch(backend: Any, step: Any, initial_state: Any = None) -> BaseException:
    """Run a flow that yields ``step`` and catches what it raises; return that error."""
    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        try:
            yield step
        except Exception as error:
            caught.append(error)

    coflow.start(body, initial_state=initial_state, backend=backend).result(timeout=5)
    assert len(caught) == 1, "the step did not raise"
    return caught[0]


class Attempts:
    """A step function that fails with a fresh ConnectionError until its ``succeed_on`` attempt."""

    def __init__(self, succeed_on: int | None = None, timeline: Any = None) -> None:
        self.succeed_on = succeed_on
        self.timeline = timeline
        self.errors: list[BaseException] = []
        self.states: list[Any] = []

    @property
    def count(self) -> int:
        return len(self.states)

    def __call__(self, state: Any) -> Any:
        self.states.append(state)
        if self.timeline is not None:
            self.timeline.log(("attempt", self.count))
        if self.count == self.succeed_on:
            return Ok(f"succeeded on attempt {self.count}")
        error = ConnectionError(f"attempt {self.count} failed")
        self.errors.append(error)
        raise error


# --- result shapes ---------------------------------------------------------------------------


def test_none_advances_with_the_state_unchanged(coflow_backend: Any) -> None:
    calls: list[Any] = []

    def fn(state: Any) -> None:
        calls.append(state)

    assert run_once(coflow_backend, run(fn), initial_state="kept") == ("kept", [None])
    assert calls == ["kept"]


def test_ok_replaces_the_state_and_gives_it(coflow_backend: Any) -> None:
    events: list[Any] = []

    def body() -> FlowGenerator:
        yield run(lambda state: Ok({**state, "synced": True}))

    runner = coflow.start(
        body, initial_state={"synced": False}, notify=events.append, backend=coflow_backend
    )

    assert runner.result(timeout=5) == {"synced": True}
    assert [type(event).__name__ for event in events] == ["FlowState", "FlowDone"]
    assert run_once(coflow_backend, run(lambda state: Ok(state + 1)), initial_state=1) == (2, [2])


@pytest.mark.parametrize("value", ["report.pdf", 0, False, [1, 2], {"not": "an Ok"}], ids=repr)
def test_any_other_value_advances_with_the_state_unchanged_and_is_given(
    coflow_backend: Any, value: Any
) -> None:
    assert run_once(coflow_backend, run(lambda state: value), initial_state="kept") == (
        "kept",
        [value],
    )


def test_retry_without_a_new_state_retries_with_the_state_unchanged(coflow_backend: Any) -> None:
    seen: list[Any] = []

    def fn(state: Any) -> Any:
        seen.append(state)
        return Retry() if len(seen) < 3 else Ok(state + 100)

    assert run_once(coflow_backend, run(fn, retries=3), initial_state=1) == (101, [101])
    assert seen == [1, 1, 1]


def test_retry_with_a_new_state_replaces_the_state_then_retries(coflow_backend: Any) -> None:
    seen: list[Any] = []
    events: list[Any] = []

    def fn(state: int) -> Any:
        seen.append(state)
        return Retry(state + 1) if state < 3 else Ok(state * 10)

    def body() -> FlowGenerator:
        yield run(fn, retries=5)

    runner = coflow.start(body, initial_state=0, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == 30
    assert seen == [0, 1, 2, 3]
    assert [(type(event).__name__, event.state) for event in events] == [
        ("FlowState", 1),
        ("FlowState", 2),
        ("FlowState", 3),
        ("FlowState", 30),
        ("FlowDone", 30),
    ]


def test_retry_with_no_retries_left_raises_retries_exhausted(coflow_backend: Any) -> None:
    error = catch(coflow_backend, run(lambda state: Retry()))

    assert isinstance(error, RetriesExhausted)


def test_error_with_an_exception_reason_raises_that_exception(coflow_backend: Any) -> None:
    reason = PermissionError("no access")

    error = catch(coflow_backend, run(lambda state: Error(reason)))

    assert error is reason


def test_error_with_another_reason_raises_step_failed(coflow_backend: Any) -> None:
    error = catch(coflow_backend, run(lambda state: Error("quota exceeded")))

    assert isinstance(error, StepFailed)
    assert error.reason == "quota exceeded"


def test_error_results_are_retried(coflow_backend: Any) -> None:
    answers = iter([Error("busy"), Error(TimeoutError("slow")), Ok("done")])

    assert run_once(coflow_backend, run(lambda state: next(answers), retries=2)) == (
        "done",
        ["done"],
    )


def test_exhausted_error_results_report_the_last_reason(coflow_backend: Any) -> None:
    answers = iter([Error("busy"), Error("still busy")])

    error = catch(coflow_backend, run(lambda state: next(answers), retries=1))

    assert isinstance(error, RetriesExhausted)
    assert isinstance(error.last_error, StepFailed)
    assert error.last_error.reason == "still busy"
    assert error.__cause__ is error.last_error


def test_run_gives_fn_the_current_state(coflow_backend: Any) -> None:
    seen: list[Any] = []

    def fn(state: Any) -> None:
        seen.append(state)

    def body() -> FlowGenerator:
        yield set_state(lambda state: {**state, "book_id": "b1"})
        yield run(fn)
        yield set_state(lambda state: {**state, "book_id": "b2"})
        yield run(fn)

    coflow.start(body, initial_state={"book_id": None}, backend=coflow_backend).result(timeout=5)
    assert seen == [{"book_id": "b1"}, {"book_id": "b2"}]


def test_each_retry_sees_the_state_as_it_is_then(coflow_backend: Any, after: After) -> None:
    attempts = Attempts(succeed_on=2)

    def body() -> FlowGenerator:
        yield run(attempts, retries=1, base_delay=0.2)

    runner = coflow.start(body, initial_state={"token": "old"}, backend=coflow_backend)
    after(0.1, lambda: runner.signal(lambda state: {"token": "new"}))

    assert runner.result(timeout=5) == "succeeded on attempt 2"
    assert attempts.states == [{"token": "old"}, {"token": "new"}]


# --- retries ---------------------------------------------------------------------------------


def test_caravela_run_retried_succeeds_on_the_3rd_attempt(coflow_backend: Any) -> None:
    attempts = Attempts(succeed_on=3)

    final, results = run_once(coflow_backend, run(attempts, retries=3), initial_state="start")

    assert attempts.count == 3
    assert attempts.states == ["start", "start", "start"]
    assert (final, results) == ("succeeded on attempt 3", ["succeeded on attempt 3"])


def test_caravela_an_error_without_retries_fails_the_flow(coflow_backend: Any) -> None:
    failure = ConnectionError("service down")
    caught: list[BaseException] = []
    events: list[Any] = []

    def fail(state: Any) -> Any:
        raise failure

    # At the yield, the error is fn's own error, as if fn had been called directly.
    def catching() -> FlowGenerator:
        try:
            yield run(fail)
        except ConnectionError as error:
            caught.append(error)

    coflow.start(catching, backend=coflow_backend).result(timeout=5)
    assert caught == [failure] and caught[0] is failure

    def uncaught() -> FlowGenerator:
        yield run(fail)

    runner = coflow.start(uncaught, notify=events.append, backend=coflow_backend)

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert failed.value.__cause__ is failure
    assert runner.status == "failed"
    assert [type(event).__name__ for event in events] == ["FlowError"]
    assert events[0].reason is failure


def test_caravela_exhausted_retries_fail_it(coflow_backend: Any) -> None:
    attempts = Attempts()

    error = catch(coflow_backend, run(attempts, retries=2))

    assert attempts.count == 3
    assert isinstance(error, RetriesExhausted)
    assert error.last_error is attempts.errors[-1]
    assert error.__cause__ is attempts.errors[-1]
    assert str(attempts.errors[-1]) == "attempt 3 failed"

    def uncaught() -> FlowGenerator:
        yield run(Attempts(), retries=2)

    runner = coflow.start(uncaught, backend=coflow_backend)
    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, RetriesExhausted)
    assert runner.status == "failed"


def test_retry_on_retries_only_the_listed_exceptions(coflow_backend: Any) -> None:
    errors = iter([ConnectionError("flaky"), ValueError("bad input")])
    calls: list[Any] = []

    def fn(state: Any) -> Any:
        calls.append(state)
        raise next(errors)

    error = catch(coflow_backend, run(fn, retries=5, retry_on=(ConnectionError,)))

    # The ConnectionError was retried; the ValueError failed at once, as itself.
    assert len(calls) == 2
    assert isinstance(error, ValueError)
    assert str(error) == "bad input"


BACKOFF_SCHEDULES = {
    "constant": [0.0, 0.025, 0.05, 0.075, 0.1],
    "linear": [0.0, 0.025, 0.075, 0.15, 0.25],
    "exponential": [0.0, 0.025, 0.075, 0.175, 0.375],
}


@pytest.mark.parametrize("backoff", list(BACKOFF_SCHEDULES))
def test_backoff_schedules(coflow_backend: Any, timeline: Any, backoff: str) -> None:
    attempts = Attempts(timeline=timeline)

    error = catch(coflow_backend, run(attempts, retries=4, backoff=backoff, base_delay=0.025))

    assert isinstance(error, RetriesExhausted)
    expected = BACKOFF_SCHEDULES[backoff]
    timeline.assert_matches([(moment, ("attempt", n)) for n, moment in enumerate(expected, 1)])


@pytest.mark.parametrize(
    ("backoff", "base_delay", "retries", "expected"),
    [
        ("exponential", 0.025, 5, [0.0, 0.025, 0.075, 0.125, 0.175, 0.225]),
        ("linear", 0.04, 4, [0.0, 0.04, 0.12, 0.22, 0.32]),
    ],
    ids=["exponential", "linear"],
)
def test_max_delay_caps_the_delay(
    coflow_backend: Any,
    timeline: Any,
    backoff: str,
    base_delay: float,
    retries: int,
    expected: list[float],
) -> None:
    cap = 0.05 if backoff == "exponential" else 0.1
    attempts = Attempts(timeline=timeline)

    catch(
        coflow_backend,
        run(attempts, retries=retries, backoff=backoff, base_delay=base_delay, max_delay=cap),
    )

    timeline.assert_matches([(moment, ("attempt", n)) for n, moment in enumerate(expected, 1)])


def test_backoff_may_be_a_function_of_the_retry_number(coflow_backend: Any, timeline: Any) -> None:
    asked: list[int] = []

    def squares(k: int) -> float:
        asked.append(k)
        return 0.01 * k * k

    attempts = Attempts(timeline=timeline)

    catch(coflow_backend, run(attempts, retries=3, backoff=squares))

    assert set(asked) == {1, 2, 3}
    timeline.assert_matches(
        [
            (0.0, ("attempt", 1)),
            (0.01, ("attempt", 2)),
            (0.05, ("attempt", 3)),
            (0.14, ("attempt", 4)),
        ]
    )


def test_jitter_draws_each_delay_from_zero_to_the_full_delay(
    coflow_backend: Any, timeline: Any, is_virtual: bool, tolerance: float
) -> None:
    attempts = Attempts(timeline=timeline)

    catch(
        coflow_backend,
        run(attempts, retries=5, backoff="exponential", base_delay=0.01, jitter=True),
    )

    moments = [moment for moment, _ in timeline.entries]
    assert len(moments) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    full_delays = [0.01 * 2 ** (k - 1) for k in range(1, 6)]
    for gap, full in zip(gaps, full_delays):
        assert 0.0 <= gap <= full + (tolerance or 1e-9), (gaps, full_delays)
    if is_virtual:
        # Drawn, not the full delay each time (the chance of that by luck is nil).
        assert any(gap < full * 0.99 for gap, full in zip(gaps, full_delays)), gaps


POLICY = RetryPolicy(retries=3, backoff="linear", base_delay=0.02, retry_on=(ConnectionError,))
OPTIONS: dict[str, Any] = {
    "retries": 3,
    "backoff": "linear",
    "base_delay": 0.02,
    "retry_on": (ConnectionError,),
}


@pytest.mark.parametrize("form", ["options", "policy"])
def test_a_retry_policy_works_like_the_separate_options(
    coflow_backend: Any, timeline: Any, form: str
) -> None:
    attempts = Attempts(timeline=timeline)
    step = run(attempts, retry=POLICY) if form == "policy" else run(attempts, **OPTIONS)

    error = catch(coflow_backend, step)

    assert isinstance(error, RetriesExhausted)
    assert error.last_error is attempts.errors[-1]
    timeline.assert_matches(
        [
            (0.0, ("attempt", 1)),
            (0.02, ("attempt", 2)),
            (0.06, ("attempt", 3)),
            (0.12, ("attempt", 4)),
        ]
    )


@pytest.mark.parametrize("form", ["options", "policy"])
def test_a_retry_policy_keeps_its_retry_on(coflow_backend: Any, form: str) -> None:
    calls: list[Any] = []

    def fn(state: Any) -> Any:
        calls.append(state)
        raise KeyError("not retried")

    step = run(fn, retry=POLICY) if form == "policy" else run(fn, **OPTIONS)

    error = catch(coflow_backend, step)

    assert isinstance(error, KeyError)
    assert len(calls) == 1


# --- timeout per attempt -----------------------------------------------------------------------


def slow_then_fast(backend: Any, slow_attempts: int, seconds: float, timeline: Any) -> Any:
    """A step function whose first ``slow_attempts`` attempts take ``seconds``.

    Each is the backend's own kind of work (a task, on the virtual clock too, a greenlet,
    a pool thread);
    the next attempt returns ``Ok("fast")`` at once.
    """
    name = getattr(backend, "name", "")
    calls: list[int] = []

    def begin() -> bool:
        calls.append(len(calls) + 1)
        timeline.log(("attempt", len(calls)))
        return len(calls) <= slow_attempts

    if name in ("asyncio", "virtual"):  # on the virtual clock, async work takes virtual time
        import asyncio

        async def on_loop(state: Any) -> Any:
            if begin():
                await asyncio.sleep(seconds)
                return Ok("slow")
            return Ok("fast")

        return on_loop
    if name == "gevent":
        import gevent

        def in_greenlet(state: Any) -> Any:
            if begin():
                gevent.sleep(seconds)
                return Ok("slow")
            return Ok("fast")

        return in_greenlet

    def in_thread(state: Any) -> Any:
        if begin():
            threading.Event().wait(seconds)
            return Ok("slow")
        return Ok("fast")

    return in_thread


def test_a_timed_out_attempt_counts_as_an_error_and_is_retried(
    coflow_backend: Any, timeline: Any
) -> None:
    fn = slow_then_fast(coflow_backend, slow_attempts=2, seconds=0.25, timeline=timeline)

    final, results = run_once(coflow_backend, run(fn, retries=2, timeout=0.05))

    assert (final, results) == ("fast", ["fast"])
    timeline.assert_matches([(0.0, ("attempt", 1)), (0.05, ("attempt", 2)), (0.1, ("attempt", 3))])


def test_a_timed_out_attempt_without_retries_raises_flow_timeout(
    coflow_backend: Any, timeline: Any
) -> None:
    fn = slow_then_fast(coflow_backend, slow_attempts=1, seconds=0.25, timeline=timeline)

    error = catch(coflow_backend, run(fn, timeout=0.05))

    assert isinstance(error, FlowTimeout)
    timeline.assert_matches([(0.0, ("attempt", 1))])


def test_timed_out_attempts_exhaust_the_retries(coflow_backend: Any, timeline: Any) -> None:
    fn = slow_then_fast(coflow_backend, slow_attempts=2, seconds=0.25, timeline=timeline)

    error = catch(coflow_backend, run(fn, retries=1, timeout=0.05))

    assert isinstance(error, RetriesExhausted)
    assert isinstance(error.last_error, FlowTimeout)
    timeline.assert_matches([(0.0, ("attempt", 1)), (0.05, ("attempt", 2))])


def test_an_attempt_that_finishes_within_its_timeout_is_not_timed_out(
    coflow_backend: Any, timeline: Any
) -> None:
    def quick(state: Any) -> Any:
        timeline.log("attempt")
        return Ok(state + 1)

    def body() -> FlowGenerator:
        yield run(quick, retries=2, timeout=0.1)
        yield coflow.wait(0.2)  # past the attempt's deadline: nothing fires
        timeline.log("finished")

    runner = coflow.start(body, initial_state=1, backend=coflow_backend)

    assert runner.result(timeout=5) == 2
    timeline.assert_matches([(0.0, "attempt"), (0.2, "finished")])


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_what_work_sets_in_its_context_stays_in_the_work(coflow_backend: Any) -> None:
    """Work runs in a context of its own, as an awaited asyncio task, a greenlet or a thread do."""

    def tag(state: Any) -> Any:
        REQUEST_ID.set("set by the work")
        return Ok(REQUEST_ID.get())

    works = [tag]
    if coflow_backend.name in ("asyncio", "virtual"):

        async def tag_on_loop(state: Any) -> Any:
            return tag(state)

        works.append(tag_on_loop)

    def body(work: Any) -> FlowGenerator:
        seen_by_work = yield run(work)
        yield set_state(lambda state: (seen_by_work, REQUEST_ID.get()))

    for work in works:
        runner = coflow.start(body(work), backend=coflow_backend)
        assert runner.result(timeout=5) == ("set by the work", "unset"), work
        assert REQUEST_ID.get() == "unset"
