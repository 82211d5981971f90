"""Bad input gets a clear error (SPEC section 7): which step, which flow, which value.

Mistakes coflow can see when a step is built are refused there; the others
are raised inside the flow at the ``yield`` that made them, naming the flow,
so they are checked on every backend.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import (
    FlowGenerator,
    InvalidStep,
    RetryPolicy,
    call,
    debounce,
    each,
    embed,
    get_state,
    parallel,
    race,
    receive,
    run,
    sequence,
    set_state,
    spawn,
    timeout,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend


def fetch() -> FlowGenerator:
    yield wait(0.01)
    return "fetched"


def caught_in(backend: Any, name: str, mistake: Callable[[], FlowGenerator]) -> BaseException:
    """Run ``mistake`` as a flow called ``name``; the error it caught at its ``yield``."""
    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        try:
            yield from mistake()
        except Exception as error:
            caught.append(error)
        yield set_state(lambda s: "went on")

    runner = coflow.start(coflow.flow(body, name=name), backend=backend)
    assert runner.result(timeout=5) == "went on"
    assert len(caught) == 1, caught
    return caught[0]


# --- a generator object runs once ----------------------------------------------------------


def test_starting_one_generator_object_twice_is_a_type_error_at_the_second_start(
    coflow_backend: Any,
) -> None:
    generator = fetch()
    first = coflow.start(generator, backend=coflow_backend)

    with pytest.raises(TypeError) as refused:
        coflow.start(generator, backend=coflow_backend)

    message = str(refused.value)
    assert "coflow.start" in message
    assert "generator object 'fetch'" in message
    assert "already used by coflow.start" in message
    assert "pass the generator function or a Flow" in message
    assert first.result(timeout=5) is None  # the first start is untouched


@pytest.mark.parametrize("combinator", [parallel, race], ids=["parallel", "race"])
def test_one_generator_object_twice_in_parallel_or_race_is_a_type_error_at_the_yield(
    coflow_backend: Any, combinator: Callable[..., Any]
) -> None:
    generator = fetch()

    def mistake() -> FlowGenerator:
        yield combinator([generator, generator])

    error = caught_in(coflow_backend, "fan_out", mistake)

    assert isinstance(error, TypeError)
    message = str(error)
    assert message.startswith("flow fan_out: ")
    assert combinator.__name__ in message
    assert "generator object 'fetch' was already used by" in message


def test_a_function_of_the_state_giving_one_generator_object_twice_is_refused(
    coflow_backend: Any,
) -> None:
    generator = fetch()

    def mistake() -> FlowGenerator:
        yield parallel(lambda state: [generator, generator])

    message = str(caught_in(coflow_backend, "fan_out", mistake))
    assert "flow fan_out: parallel" in message
    assert "generator object 'fetch'" in message


@pytest.mark.parametrize("child_step", [call, spawn], ids=["call", "spawn"])
def test_a_second_child_of_one_generator_object_is_a_type_error_at_the_yield(
    coflow_backend: Any, child_step: Callable[..., Any]
) -> None:
    generator = fetch()

    def mistake() -> FlowGenerator:
        yield call(generator)  # the first use runs it
        yield child_step(generator)

    error = caught_in(coflow_backend, "parent", mistake)

    assert isinstance(error, TypeError)
    message = str(error)
    assert message.startswith("flow parent: ")
    assert f"{child_step.__name__}: the generator object 'fetch'" in message
    assert "already used by call" in message


def test_yielding_one_generator_object_twice_is_a_type_error_at_the_second_yield(
    coflow_backend: Any,
) -> None:
    generator = fetch()

    def mistake() -> FlowGenerator:
        assert (yield generator) == "fetched"
        yield generator

    message = str(caught_in(coflow_backend, "twice", mistake))
    assert message.startswith("flow twice yielded the generator object 'fetch'")
    assert "has already run to its end" in message


def test_a_sequence_of_one_generator_object_twice_is_refused_at_the_second(
    coflow_backend: Any,
) -> None:
    generator = fetch()

    def mistake() -> FlowGenerator:
        yield sequence(generator, generator)

    message = str(caught_in(coflow_backend, "seq", mistake))
    assert "flow seq" in message
    assert "generator object 'fetch'" in message


def test_yielding_a_generator_object_started_elsewhere_is_refused(coflow_backend: Any) -> None:
    generator = fetch()
    started = coflow.start(generator, backend=coflow_backend)

    def mistake() -> FlowGenerator:
        yield generator  # taken by the start above, whether or not it has run yet

    message = str(caught_in(coflow_backend, "thief", mistake))
    assert "flow thief yielded the generator object 'fetch'" in message
    started.result(timeout=5)


def test_a_generator_object_that_is_running_is_refused(coflow_backend: Any) -> None:
    def selfish() -> FlowGenerator:
        me = yield get_state()
        try:
            yield call(me)
        except TypeError as error:
            message = str(error)
            yield set_state(lambda s: message)

    generator = selfish()
    message = coflow.start(generator, initial_state=generator, backend=coflow_backend).result(
        timeout=5
    )
    assert message.startswith("flow selfish: call: the generator object 'selfish'")


def test_a_generator_object_stepped_by_hand_is_refused_by_start(coflow_backend: Any) -> None:
    generator = fetch()
    next(generator)
    with pytest.raises(TypeError, match="generator object 'fetch' has already started"):
        coflow.start(generator, backend=coflow_backend)


def test_an_exhausted_generator_object_is_refused_by_start(coflow_backend: Any) -> None:
    generator = fetch()
    list(generator)
    with pytest.raises(TypeError, match="generator object 'fetch' has already run to its end"):
        coflow.start(generator, backend=coflow_backend)


def test_a_generator_object_used_once_in_each_place_still_runs(coflow_backend: Any) -> None:
    def fine() -> FlowGenerator:
        first = yield fetch()
        both = yield parallel([fetch(), fetch()])
        child = yield call(fetch())
        timed = yield timeout(fetch(), 5)
        yield set_state(lambda s: [first, both, child, timed])

    result = coflow.start(fine, backend=coflow_backend).result(timeout=5)
    assert result == ["fetched", ["fetched", "fetched"], None, "fetched"]


# --- delays too large to be a float -----------------------------------------------------------

HUGE = 10**400

HUGE_DELAY_TAKERS: dict[str, Callable[[Any], Any]] = {
    "wait": lambda seconds: wait(seconds),
    "debounce": lambda seconds: debounce(seconds),
    "wait_until": lambda seconds: wait_until(bool, timeout=seconds),
    "receive": lambda seconds: receive(timeout=seconds),
    "run(fetch)": lambda seconds: run(fetch, timeout=seconds),
    "base_delay": lambda seconds: run(fetch, retries=1, base_delay=seconds),
    "max_delay": lambda seconds: run(fetch, retries=1, max_delay=seconds),
    "RetryPolicy": lambda seconds: RetryPolicy(retries=1, base_delay=seconds),
    "timeout": lambda seconds: timeout(wait(1), seconds),
    "call(fetch)": lambda seconds: call(fetch, timeout=seconds),
}


@pytest.mark.parametrize("sign", [1, -1], ids=["huge", "hugely-negative"])
@pytest.mark.parametrize("taker", list(HUGE_DELAY_TAKERS))
def test_a_delay_too_large_for_a_float_is_a_value_error_when_the_step_is_built(
    taker: str, sign: int
) -> None:
    with pytest.raises(ValueError) as refused:
        HUGE_DELAY_TAKERS[taker](sign * HUGE)
    message = str(refused.value)
    assert taker in message
    assert "401 digits" in message
    assert len(message) < 200  # the value is described, not printed in full


def test_a_backoff_giving_a_delay_too_large_for_a_float_raises_at_the_yield(
    coflow_backend: Any,
) -> None:
    def failing(state: Any) -> None:
        raise ConnectionError("down")

    def mistake() -> FlowGenerator:
        yield run(failing, retries=1, backoff=lambda k: HUGE)

    error = caught_in(coflow_backend, "backing_off", mistake)
    assert isinstance(error, ValueError)
    assert "backoff(1)" in str(error)


# --- retry_on must name exception types -----------------------------------------------------


@pytest.mark.parametrize(
    "retry_on",
    [ValueError(), "ValueError", 5, (ValueError, 5), [ValueError, "KeyError"]],
    ids=["an-exception", "a-name", "an-int", "a-tuple-holding-an-int", "a-list-holding-a-name"],
)
def test_retry_on_that_is_not_exception_types_is_a_type_error_naming_it(retry_on: Any) -> None:
    expected = "retry_on must be an exception type or a tuple of them, got " + repr(retry_on)
    with pytest.raises(TypeError) as refused:
        run(fetch, retries=1, retry_on=retry_on)
    assert str(refused.value).startswith("run(fetch): " + expected)
    with pytest.raises(TypeError) as refused:
        RetryPolicy(retry_on=retry_on)
    assert str(refused.value).startswith("RetryPolicy: " + expected)


def test_retry_on_may_be_one_exception_type_or_several() -> None:
    assert RetryPolicy(retry_on=KeyError).retry_on == (KeyError,)
    assert RetryPolicy(retry_on=(KeyError, OSError)).retry_on == (KeyError, OSError)
    assert RetryPolicy(retry_on=[KeyError]).retry_on == (KeyError,)


# --- keys must be hashable ----------------------------------------------------------------------


def ignore(item: Any, state: Any) -> Any:
    return coflow.Skip("ignored")


@pytest.mark.parametrize("key", [[1], {"urls"}, {"a": 1}], ids=["list", "set", "dict"])
def test_an_each_key_that_is_not_hashable_is_a_type_error_naming_it(key: Any) -> None:
    with pytest.raises(TypeError) as refused:
        each(key, ignore)
    message = str(refused.value)
    assert message.startswith("each: ")
    assert f"got {key!r}" in message
    assert "hashable" in message


@pytest.mark.parametrize("combinator", [parallel, race], ids=["parallel", "race"])
def test_a_collect_as_that_is_not_hashable_is_a_type_error_naming_it(
    combinator: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError) as refused:
        combinator([fetch], collect_as=["results"])
    message = str(refused.value)
    assert message.startswith(f"{combinator.__name__}: collect_as must be hashable")
    assert "got ['results']" in message


@pytest.mark.parametrize("child_step", [call, spawn], ids=["call", "spawn"])
def test_a_ref_that_is_not_hashable_is_a_type_error_naming_it(
    child_step: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError) as refused:
        child_step(fetch, ref={"id": 1})
    message = str(refused.value)
    assert message.startswith(f"{child_step.__name__}(fetch): ref must be hashable")
    assert "got {'id': 1}" in message


# --- parallel and race need an iterable of tasks ---------------------------------------------


@pytest.mark.parametrize("combinator", [parallel, race], ids=["parallel", "race"])
@pytest.mark.parametrize("tasks", [5, "ab", {"a": fetch}], ids=["int", "str", "dict"])
def test_tasks_that_are_not_an_iterable_of_tasks_are_a_type_error_naming_them(
    combinator: Callable[..., Any], tasks: Any
) -> None:
    with pytest.raises(TypeError) as refused:
        combinator(tasks)
    message = str(refused.value)
    assert message.startswith(f"{combinator.__name__}: tasks must be")
    assert f"got {tasks!r}" in message


def five(state: Any) -> int:
    return 5


@pytest.mark.parametrize("combinator", [parallel, race], ids=["parallel", "race"])
def test_a_function_of_the_state_giving_no_iterable_raises_at_the_yield(
    coflow_backend: Any, combinator: Callable[..., Any]
) -> None:
    def mistake() -> FlowGenerator:
        yield combinator(five)

    error = caught_in(coflow_backend, "fan_out", mistake)

    assert isinstance(error, TypeError)
    message = str(error)
    assert message.startswith(f"flow fan_out: {combinator.__name__}(tasks=five)")
    assert "gave 5, which is not an iterable of tasks" in message


# --- timeout and embed need a step or a flow -----------------------------------------------


def test_timeout_of_something_that_is_neither_a_step_nor_a_flow_is_refused_when_built() -> None:
    with pytest.raises(InvalidStep) as refused:
        timeout(42, 1)
    assert str(refused.value).startswith("timeout: 42 is neither a step nor a flow")


def test_embed_of_something_that_is_neither_a_step_nor_a_flow_is_refused_when_built() -> None:
    with pytest.raises(InvalidStep) as refused:
        embed(42, lambda s: s, lambda s, part: part)
    assert str(refused.value).startswith("embed: 42 is neither a step nor a flow")


def test_a_timeout_step_holding_a_non_step_names_the_flow_at_the_yield(coflow_backend: Any) -> None:
    built = timeout(wait(1), 1)

    def mistake() -> FlowGenerator:
        yield dataclasses.replace(built, step=42)  # past the constructor's check

    error = caught_in(coflow_backend, "guarded", mistake)
    assert isinstance(error, InvalidStep)
    assert str(error).startswith("flow guarded: timeout: 42 is neither a step nor a flow")


# --- a custom Step subclass ------------------------------------------------------------------


class Plain(coflow.Step[None]):
    """A subclass of coflow's base with no handler: coflow cannot know what it means."""


@dataclasses.dataclass(frozen=True)
class Tagged(coflow.Step[None]):
    tag: str


def test_a_step_subclass_has_a_repr() -> None:
    assert "Plain" in repr(Plain())
    assert repr(Tagged("x")) == "Tagged(tag='x')"


@pytest.mark.parametrize("step", [Plain(), Tagged("x")], ids=["plain", "dataclass"])
def test_yielding_a_step_subclass_with_no_handler_is_an_invalid_step(
    coflow_backend: Any, step: coflow.Step[None]
) -> None:
    def mistake() -> FlowGenerator:
        yield step

    error = caught_in(coflow_backend, "custom", mistake)

    assert isinstance(error, InvalidStep)
    message = str(error)
    assert message.startswith("flow custom yielded ")
    assert type(step).__qualname__ in message
    assert "no handler" in message


# --- runner.result(timeout=...) ----------------------------------------------------------------


@pytest.mark.parametrize("limit", [1e10, 10**400, math.inf], ids=["1e10", "huge-int", "inf"])
def test_result_with_a_timeout_beyond_the_clocks_limit_waits_as_long_as_asked(
    coflow_backend: Any, limit: float
) -> None:
    runner = coflow.start(fetch, initial_state="waited", backend=coflow_backend)
    assert runner.result(timeout=limit) == "waited"


@pytest.mark.parametrize("limit", [-1, math.nan, -math.inf], ids=["negative", "nan", "-inf"])
def test_result_with_a_negative_or_nan_timeout_is_a_value_error(
    coflow_backend: Any, limit: float
) -> None:
    runner = coflow.start(fetch, backend=coflow_backend)
    with pytest.raises(ValueError) as refused:
        runner.result(timeout=limit)
    message = str(refused.value)
    assert "result" in message
    assert f"timeout must be None or a number of seconds >= 0, got {limit!r}" in message
    runner.result(timeout=5)


def test_result_with_a_timeout_that_is_not_a_number_is_a_type_error(coflow_backend: Any) -> None:
    runner = coflow.start(fetch, backend=coflow_backend)
    with pytest.raises(TypeError, match="timeout must be None or a number of seconds, got '5'"):
        runner.result(timeout="5")  # type: ignore[arg-type]
    runner.result(timeout=5)


# --- bad arguments to a backend's public methods --------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-1, ValueError),
        (HUGE, ValueError),
        ("1", TypeError),
        (None, TypeError),
    ],
    ids=["nan", "inf", "negative", "huge", "str", "None"],
)
def test_advancing_the_virtual_clock_by_a_bad_amount_is_refused(
    seconds: Any, error: type[Exception]
) -> None:
    backend = VirtualBackend()
    runner = coflow.start(wait(1), backend=backend)
    with pytest.raises(error, match=r"VirtualBackend\.advance: seconds must be"):
        backend.advance(seconds)
    assert backend.now() == 0.0
    assert runner.status == "running"  # nothing ran: the refused call did nothing


@pytest.mark.parametrize(
    ("until", "error", "shown"),
    [
        (math.nan, ValueError, "until must be None or a time in seconds, got nan"),
        ("2", TypeError, "until must be None or a time in seconds, got '2'"),
        (-1.0, ValueError, "until -1.0 is before now (0)"),
        (-HUGE, ValueError, "until a negative int of 401 digits is before now (0)"),
    ],
    ids=["nan", "str", "past", "hugely-negative"],
)
def test_running_the_virtual_clock_until_a_bad_time_is_refused(
    until: Any, error: type[Exception], shown: str
) -> None:
    backend = VirtualBackend()
    with pytest.raises(error) as refused:
        backend.run(until=until)
    assert str(refused.value) == f"VirtualBackend.run: {shown}"


@pytest.mark.parametrize("until", [math.inf, HUGE], ids=["inf", "huge-int"])
def test_running_the_virtual_clock_until_beyond_any_time_runs_until_nothing_is_left(
    until: Any,
) -> None:
    backend = VirtualBackend()
    coflow.start(wait(3), backend=backend)
    backend.run(until=until)
    assert backend.now() == 3.0


@pytest.mark.parametrize(
    ("arguments", "error", "shown"),
    [
        ({"start": math.nan}, ValueError, "start must be a finite time, got nan"),
        ({"start": math.inf}, ValueError, "start must be a finite time, got inf"),
        ({"start": "0"}, TypeError, "start must be a time in seconds, got '0'"),
        ({"seed": "1"}, TypeError, "seed must be an int, got '1'"),
        ({"seed": 1.5}, TypeError, "seed must be an int, got 1.5"),
        ({"max_steps": 0}, ValueError, "max_steps must be >= 1, got 0"),
        ({"max_steps": None}, TypeError, "max_steps must be an int, got None"),
    ],
    ids=["start-nan", "start-inf", "start-str", "seed-str", "seed-float", "steps-0", "steps-None"],
)
def test_a_virtual_backend_with_bad_arguments_is_refused(
    arguments: dict[str, Any], error: type[Exception], shown: str
) -> None:
    with pytest.raises(error) as refused:
        VirtualBackend(**arguments)
    assert str(refused.value) == f"VirtualBackend: {shown}"


@pytest.mark.parametrize(
    ("workers", "error", "shown"),
    [
        (0, ValueError, "max_workers must be >= 1, got 0"),
        (-1, ValueError, "max_workers must be >= 1, got -1"),
        ("4", TypeError, "max_workers must be None or an int, got '4'"),
    ],
    ids=["zero", "negative", "str"],
)
def test_a_thread_backend_with_a_bad_pool_size_is_refused(
    workers: Any, error: type[Exception], shown: str
) -> None:
    from coflow.backends.threads import ThreadBackend

    with pytest.raises(error) as refused:
        ThreadBackend(max_workers=workers)
    assert str(refused.value) == f"ThreadBackend: {shown}"


def test_an_asyncio_backend_on_something_that_is_not_a_loop_is_refused() -> None:
    from coflow.backends.asyncio import AsyncioBackend

    with pytest.raises(TypeError, match="AsyncioBackend: loop must be an asyncio event loop"):
        AsyncioBackend(loop=42)  # type: ignore[arg-type]
