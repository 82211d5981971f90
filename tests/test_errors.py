"""Bad input and failures (SPEC section 7): what is raised, where, and what it says.

Errors of steps are raised inside the flow at the ``yield`` that failed, so
most tests catch them in the flow itself and then check the flow went on.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import (
    Cancelled,
    ChildFailed,
    Deadlock,
    FlowException,
    FlowFailed,
    FlowGenerator,
    FlowNotRunning,
    FlowStopped,
    FlowTimeout,
    InvalidStep,
    Ok,
    RetriesExhausted,
    StepFailed,
    each,
    get_state,
    parallel,
    race,
    run,
    set_state,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend

# Yielding something that is not a step


@pytest.mark.parametrize("value", [42, "wait(1)", 2.5, None], ids=["int", "str", "float", "None"])
def test_yielding_a_non_step_raises_invalid_step_at_that_yield(
    coflow_backend: Any, value: Any
) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state="start", name="bad_yielder")
    def bad_yielder() -> FlowGenerator:
        try:
            yield value
        except InvalidStep as err:
            caught.append(err)
        yield set_state(lambda s: "recovered")

    runner = coflow.start(bad_yielder, backend=coflow_backend)
    assert runner.result(timeout=5) == "recovered"
    assert len(caught) == 1
    assert isinstance(caught[0], TypeError)
    message = str(caught[0])
    assert "bad_yielder" in message
    assert repr(value) in message


def test_uncaught_invalid_step_fails_the_flow(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=0, name="careless")
    def careless() -> FlowGenerator:
        yield wait(0.01)
        yield 42

    runner = coflow.start(careless, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    assert isinstance(excinfo.value.__cause__, InvalidStep)
    assert runner.status == "failed"


@pytest.mark.parametrize(
    "constructor",
    [coflow.get_state, coflow.wait, coflow.set_state, coflow.receive, coflow.debounce],
    ids=lambda c: c.__name__,
)
def test_yielding_an_uncalled_step_constructor_hints_at_calling_it(
    coflow_backend: Any, constructor: Any
) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state=0, name="forgetful")
    def forgetful() -> FlowGenerator:
        try:
            yield constructor
        except InvalidStep as err:
            caught.append(err)

    runner = coflow.start(forgetful, backend=coflow_backend)
    runner.result(timeout=5)
    assert len(caught) == 1
    message = str(caught[0])
    assert "forgetful" in message
    assert "call" in message.lower()
    assert f"{constructor.__name__}(" in message


# Bad values when a step is built


def _noop(state: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("build", "shown"),
    [
        (lambda: coflow.wait(-1), "-1"),
        (lambda: coflow.wait(math.nan), "nan"),
        (lambda: coflow.wait(math.inf), "inf"),
        (lambda: coflow.debounce(-0.5), "-0.5"),
        (lambda: coflow.wait_until(bool, timeout=-2), "-2"),
        (lambda: coflow.receive(timeout=math.nan), "nan"),
        (lambda: coflow.timeout(coflow.wait(1), -3), "-3"),
        (lambda: coflow.run(_noop, retries=-1), "-1"),
        (lambda: coflow.run(_noop, backoff="fibonacci"), "fibonacci"),
        (lambda: coflow.run(_noop, retries=2, base_delay=-0.1), "-0.1"),
        (lambda: coflow.run(_noop, retries=2, max_delay=-5), "-5"),
        (lambda: coflow.parallel([], on_error="ignore"), "ignore"),
        (lambda: coflow.run(_noop, retry=coflow.RetryPolicy(retries=-4)), "-4"),
        (lambda: coflow.run(_noop, retry=coflow.RetryPolicy(backoff="sometimes")), "sometimes"),
    ],
    ids=[
        "wait-negative",
        "wait-nan",
        "wait-inf",
        "debounce-negative",
        "wait_until-timeout-negative",
        "receive-timeout-nan",
        "timeout-negative",
        "run-retries-negative",
        "run-backoff-unknown",
        "run-base_delay-negative",
        "run-max_delay-negative",
        "parallel-on_error-unknown",
        "retry-policy-retries-negative",
        "retry-policy-backoff-unknown",
    ],
)
def test_bad_values_are_value_errors_when_the_step_is_built(
    build: Callable[[], Any], shown: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        build()
    assert shown in str(excinfo.value)


# collect_as on a state that cannot hold it


@pytest.mark.parametrize("combinator", [parallel, race], ids=["parallel", "race"])
def test_collect_as_on_a_plain_state_is_a_type_error_at_the_yield(
    coflow_backend: Any, combinator: Any
) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state=5, name="counter_flow")
    def counter_flow() -> FlowGenerator:
        try:
            yield combinator([lambda: 1, lambda: 2], collect_as="results")
        except TypeError as err:
            caught.append(err)
        yield set_state(lambda s: s + 1)

    runner = coflow.start(counter_flow, backend=coflow_backend)
    assert runner.result(timeout=5) == 6  # state untouched by the failed collect
    assert len(caught) == 1
    message = str(caught[0])
    assert "counter_flow" in message
    assert "int" in message or "5" in message


# each on a missing key or a non-iterable


def test_each_on_a_missing_key_raises_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state={"books": []}, name="importer")
    def importer() -> FlowGenerator:
        try:
            yield each("urls", lambda url, s: Ok(s))
        except Exception as err:
            caught.append(err)
        yield set_state(lambda s: {**s, "after": True})

    runner = coflow.start(importer, backend=coflow_backend)
    assert runner.result(timeout=5) == {"books": [], "after": True}
    assert len(caught) == 1
    message = str(caught[0])
    assert "importer" in message
    assert "urls" in message


def test_each_on_a_non_iterable_raises_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state={"urls": 5}, name="importer")
    def importer() -> FlowGenerator:
        try:
            yield each("urls", lambda url, s: Ok(s))
        except Exception as err:
            caught.append(err)
        yield set_state(lambda s: {**s, "after": True})

    runner = coflow.start(importer, backend=coflow_backend)
    assert runner.result(timeout=5) == {"urls": 5, "after": True}
    assert len(caught) == 1
    message = str(caught[0])
    assert "importer" in message
    assert "urls" in message or "5" in message


def _count_of(state: dict[str, Any]) -> int:
    return int(state["count"])


def test_each_on_a_function_returning_a_non_iterable_raises_at_the_yield(
    coflow_backend: Any,
) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state={"count": 3}, name="tally")
    def counter() -> FlowGenerator:
        try:
            yield each(_count_of, lambda item, s: Ok(s))
        except Exception as err:
            caught.append(err)

    runner = coflow.start(counter, backend=coflow_backend)
    runner.result(timeout=5)
    assert len(caught) == 1
    assert "tally" in str(caught[0])


# User functions that raise


def test_raising_predicate_raises_at_the_wait_until(coflow_backend: Any) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state={}, name="watcher")
    def watcher() -> FlowGenerator:
        try:
            yield wait_until(lambda s: s["ready"])
        except KeyError as err:
            caught.append(err)
        yield set_state(lambda s: "handled")

    runner = coflow.start(watcher, backend=coflow_backend)
    assert runner.result(timeout=5) == "handled"
    assert len(caught) == 1


def test_predicate_raising_on_a_recheck_raises_at_the_wait_until(
    coflow_backend: Any, after: Any
) -> None:
    caught: list[BaseException] = []

    def ready(state: dict[str, Any]) -> bool:
        return bool(1 / state["divisor"] > 1)  # raises once divisor becomes 0

    @coflow.flow(initial_state={"divisor": 1}, name="watcher")
    def watcher() -> FlowGenerator:
        try:
            yield wait_until(ready)
        except ZeroDivisionError as err:
            caught.append(err)

    runner = coflow.start(watcher, backend=coflow_backend)
    after(0.02, lambda: runner.signal(lambda s: {"divisor": 0}))
    assert runner.result(timeout=5) == {"divisor": 0}
    assert len(caught) == 1


def test_raising_set_state_function_raises_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []
    error = ValueError("bad update")

    def update(state: Any) -> Any:
        raise error

    @coflow.flow(initial_state=1, name="updater")
    def updater() -> FlowGenerator:
        try:
            yield set_state(update)
        except ValueError as err:
            caught.append(err)
        state = yield get_state()
        yield set_state(lambda s: ("unchanged", state))

    runner = coflow.start(updater, backend=coflow_backend)
    assert runner.result(timeout=5) == ("unchanged", 1)
    assert caught == [error]


def test_raising_each_callback_raises_at_the_yield_and_keeps_progress(coflow_backend: Any) -> None:
    caught: list[BaseException] = []
    error = RuntimeError("item 3 is broken")

    def record(item: int, state: dict[str, Any]) -> Any:
        if item == 3:
            raise error
        return Ok({**state, "done": [*state["done"], item]})

    @coflow.flow(initial_state={"items": [1, 2, 3, 4], "done": []}, name="worker")
    def worker() -> FlowGenerator:
        try:
            yield each("items", record)
        except RuntimeError as err:
            caught.append(err)

    runner = coflow.start(worker, backend=coflow_backend)
    assert runner.result(timeout=5) == {"items": [1, 2, 3, 4], "done": [1, 2]}
    assert caught == [error]


def test_uncaught_raising_predicate_fails_the_flow_with_it_as_cause(coflow_backend: Any) -> None:
    @coflow.flow(initial_state={}, name="watcher")
    def watcher() -> FlowGenerator:
        yield wait_until(lambda s: s["ready"])

    runner = coflow.start(watcher, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    assert isinstance(excinfo.value.__cause__, KeyError)


# Coroutine functions on the virtual clock: awaited there (tests/test_virtual_async_work.py)


async def _fetch(state: Any) -> int:
    return 1


@pytest.mark.parametrize(
    "work",
    [_fetch, functools.partial(_fetch)],
    ids=["coroutine-function", "partial-of-coroutine-function"],
)
def test_coroutine_function_given_to_run_on_virtual_is_awaited(work: Any) -> None:
    got: list[Any] = []

    @coflow.flow(initial_state=0, name="fetcher")
    def fetcher() -> FlowGenerator:
        got.append((yield run(work)))

    coflow.start(fetcher, backend=VirtualBackend()).result(timeout=5)
    assert got == [1]


# Signal and send on an ended runner


def _ended_runner(backend: Any, how: str) -> coflow.Runner:
    @coflow.flow(initial_state=0, name="finished_flow")
    def finished_flow() -> FlowGenerator:
        yield wait(0.01)
        if how == "failed":
            raise RuntimeError("boom")
        if how == "stopped":
            yield wait_until(lambda s: False)

    runner = coflow.start(finished_flow, backend=backend)
    if how == "stopped":
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
    elif how == "failed":
        with pytest.raises(FlowFailed):
            runner.result(timeout=5)
    else:
        runner.result(timeout=5)
    assert runner.status == how
    return runner


@pytest.mark.parametrize("how", ["done", "failed", "stopped"])
def test_signal_on_an_ended_runner_raises_flow_not_running(coflow_backend: Any, how: str) -> None:
    runner = _ended_runner(coflow_backend, how)
    with pytest.raises(FlowNotRunning) as excinfo:
        runner.signal(lambda s: s + 1)
    assert "finished_flow" in str(excinfo.value)
    assert runner.get_state() == 0


@pytest.mark.parametrize("how", ["done", "failed", "stopped"])
def test_send_on_an_ended_runner_raises_flow_not_running(coflow_backend: Any, how: str) -> None:
    runner = _ended_runner(coflow_backend, how)
    with pytest.raises(FlowNotRunning) as excinfo:
        runner.send("hello")
    assert "finished_flow" in str(excinfo.value)


# The hierarchy


@pytest.mark.parametrize(
    "error",
    [
        FlowFailed,
        FlowStopped,
        FlowTimeout,
        RetriesExhausted,
        StepFailed,
        ChildFailed,
        FlowNotRunning,
        Deadlock,
        InvalidStep,
    ],
)
def test_every_public_error_derives_from_flow_exception(error: type[BaseException]) -> None:
    assert issubclass(error, FlowException)
    assert issubclass(error, Exception)


def test_invalid_step_is_also_a_type_error() -> None:
    assert issubclass(InvalidStep, TypeError)


def test_cancelled_is_a_base_exception_not_an_exception() -> None:
    assert issubclass(Cancelled, BaseException)
    assert not issubclass(Cancelled, Exception)
    assert not issubclass(Cancelled, FlowException)


def test_except_exception_in_a_flow_does_not_swallow_a_stop(
    coflow_backend: Any, after: Any
) -> None:
    swallowed: list[BaseException] = []

    @coflow.flow(initial_state=0, name="greedy")
    def greedy() -> FlowGenerator:
        try:
            yield wait_until(lambda s: False)
        except Exception as err:  # must not see the cancellation
            swallowed.append(err)
        yield set_state(lambda s: "escaped")

    runner = coflow.start(greedy, backend=coflow_backend)
    after(0.02, runner.stop)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert swallowed == []


# Errors show where they happened


def _explode(state: Any) -> Any:
    raise ConnectionError("service down")


def fetch_part(part: str) -> FlowGenerator:
    yield get_state()
    yield run(_explode)
    return part


@coflow.flow(initial_state=None, name="outer_flow")
def outer_flow() -> FlowGenerator:
    yield wait(0.01)
    yield fetch_part("cover")


@coflow.flow(initial_state=None, name="lonely_flow")
def lonely_flow() -> FlowGenerator:
    yield wait(0.01)
    yield run(_explode)


def _line_of(function: Callable[..., Any], text: str) -> int:
    lines, first = inspect.getsourcelines(function)
    matches = [first + offset for offset, line in enumerate(lines) if text in line]
    assert len(matches) == 1, matches
    return matches[0]


def _location_pattern(line: int) -> str:
    return rf"{re.escape(os.path.basename(__file__))}\D{{0,12}}\b{line}\b"


def test_flow_failed_names_the_flow_path_and_the_failing_yield(coflow_backend: Any) -> None:
    line = _line_of(fetch_part, "yield run(_explode)")
    runner = coflow.start(outer_flow, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    message = str(excinfo.value)
    assert "outer_flow" in message
    assert "fetch_part" in message
    assert message.index("outer_flow") < message.index("fetch_part")
    assert re.search(_location_pattern(line), message), message
    assert isinstance(excinfo.value.__cause__, ConnectionError)


def test_flow_failed_names_the_root_flow_and_its_failing_yield(coflow_backend: Any) -> None:
    line = _line_of(lonely_flow, "yield run(_explode)")
    runner = coflow.start(lonely_flow, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    message = str(excinfo.value)
    assert "lonely_flow" in message
    assert re.search(_location_pattern(line), message), message


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes exist from Python 3.11")
def test_reason_carries_a_note_with_the_location(coflow_backend: Any) -> None:
    line = _line_of(fetch_part, "yield run(_explode)")
    runner = coflow.start(outer_flow, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    reason = excinfo.value.__cause__
    assert isinstance(reason, ConnectionError)
    notes = "\n".join(getattr(reason, "__notes__", []))
    assert "outer_flow" in notes
    assert "fetch_part" in notes
    assert re.search(_location_pattern(line), notes), notes


def test_the_traceback_reads_like_nested_calls_through_each_yield(coflow_backend: Any) -> None:
    runner = coflow.start(outer_flow, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    reason = excinfo.value.__cause__
    assert reason is not None
    frames = [frame.name for frame in traceback.extract_tb(reason.__traceback__)]
    assert "drive" not in frames  # the scheduler's step loop is not part of the story
    assert frames.index("outer_flow") < frames.index("fetch_part") < frames.index("_explode")


def test_an_error_raised_as_a_wait_ends_reads_like_nested_calls_too(coflow_backend: Any) -> None:
    """A flow resumed by its timer (on the virtual clock, outside the step loop) included."""

    def late_failure() -> FlowGenerator:
        yield wait(0.01)
        raise KeyError("gone")

    def waiting_parent() -> FlowGenerator:
        yield late_failure

    runner = coflow.start(waiting_parent, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    reason = excinfo.value.__cause__
    assert isinstance(reason, KeyError)
    frames = [frame.name for frame in traceback.extract_tb(reason.__traceback__)]
    assert frames == ["waiting_parent", "late_failure"]


def test_an_error_after_a_child_ended_chains_to_nothing_of_the_scheduler(
    coflow_backend: Any,
) -> None:
    """A caller resumed as its child ends runs outside the step loop's exception handlers."""

    def quick_child() -> FlowGenerator:
        yield wait(0.01)  # blocks first: its end, not its start, resumes the parent
        yield set_state(lambda s: "done")

    def parent_after_child() -> FlowGenerator:
        yield coflow.call(quick_child)
        raise LookupError("after the child")

    runner = coflow.start(parent_after_child, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    reason = excinfo.value.__cause__
    assert isinstance(reason, LookupError)
    assert reason.__context__ is None  # no "during handling of StopIteration" in its traceback
