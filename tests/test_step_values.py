"""Steps are values: immutable, comparable, readable, and testable with no backend at all."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import (
    FlowGenerator,
    Ok,
    RetriesExhausted,
    RetryPolicy,
    Step,
    branch,
    debounce,
    each,
    embed,
    get_state,
    parallel,
    race,
    receive,
    repeat,
    run,
    sequence,
    set_state,
    timeout,
    wait,
    wait_until,
)


# Named functions (not lambdas) so that equality and repr have something stable to show.
def is_dirty(state: Any) -> bool:
    return bool(state["dirty"])


def is_clean(state: Any) -> bool:
    return not state["dirty"]


def is_text(message: Any) -> bool:
    return isinstance(message, str)


def mark_dirty(state: Any) -> Any:
    return {**state, "dirty": True}


def mark_processing(state: Any) -> Any:
    return {**state, "dirty": "processing"}


def mark_failed(state: Any) -> Any:
    return {**state, "dirty": "failed"}


def fetch_book(state: Any) -> Any:
    return Ok(state)


def push_book(state: Any) -> Any:
    return Ok({**state, "dirty": False})


def ping() -> str:
    return "ping"


def pong() -> str:
    return "pong"


def add_item(item: Any, state: Any) -> Any:
    return Ok(state)


def pick(state: Any) -> str:
    return "a"


def get_part(state: Any) -> Any:
    return state["part"]


def put_part(state: Any, part: Any) -> Any:
    return {**state, "part": part}


def child() -> FlowGenerator:
    yield wait(0.1)


# Each factory builds a fresh step; calling it twice gives two equal, distinct objects.
STEP_FACTORIES: dict[str, Callable[[], Step[Any]]] = {
    "sequence": lambda: sequence(wait(0.5), set_state(mark_dirty)),
    "repeat": lambda: repeat(wait(0.5), times=3),
    "wait": lambda: wait(0.5),
    "wait_until": lambda: wait_until(is_dirty, timeout=1.5),
    "debounce": lambda: debounce(0.25),
    "receive": lambda: receive(match=is_text, timeout=2.5),
    "set_state": lambda: set_state(mark_dirty),
    "get_state": lambda: get_state(),
    "run": lambda: run(fetch_book, retries=3, backoff="exponential", base_delay=0.2),
    "parallel": lambda: parallel((ping, pong), collect_as="pings"),
    "race": lambda: race((ping, pong)),
    "each": lambda: each("items", add_item),
    "branch": lambda: branch(pick, {"a": wait(0.5)}),
    "embed": lambda: embed(child, get_part, put_part),
    "timeout": lambda: timeout(wait(0.5), 1.5),
}

# Steps whose every argument is hashable (branch takes a dict of cases).
HASHABLE = [name for name in STEP_FACTORIES if name != "branch"]


@pytest.mark.parametrize("name", list(STEP_FACTORIES))
def test_assigning_an_attribute_of_a_step_raises(name: str) -> None:
    step: Any = STEP_FACTORIES[name]()
    before = STEP_FACTORIES[name]()
    for field in dataclasses.fields(step):
        with pytest.raises(AttributeError):
            setattr(step, field.name, None)
    # New names are refused too (a slotted frozen dataclass raises TypeError on some CPythons).
    with pytest.raises((AttributeError, TypeError)):
        step.extra = None
    assert step == before


@pytest.mark.parametrize("name", list(STEP_FACTORIES))
def test_steps_built_from_equal_arguments_are_equal(name: str) -> None:
    first, second = STEP_FACTORIES[name](), STEP_FACTORIES[name]()
    assert first == second
    assert not (first != second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (wait(0.5), wait(0.25)),
        (wait(0.5), debounce(0.5)),
        (debounce(0.5), debounce(0.25)),
        (wait_until(is_dirty), wait_until(is_clean)),
        (wait_until(is_dirty, timeout=1.0), wait_until(is_dirty)),
        (receive(), receive(match=is_text)),
        (receive(timeout=1.0), receive(timeout=2.0)),
        (set_state(mark_dirty), set_state(mark_processing)),
        (run(fetch_book), run(push_book)),
        (run(fetch_book, retries=3), run(fetch_book, retries=2)),
        (
            run(fetch_book, retries=3, backoff="linear"),
            run(fetch_book, retries=3, backoff="exponential"),
        ),
        (run(fetch_book, timeout=1.0), run(fetch_book)),
        (sequence(wait(1.0), wait(2.0)), sequence(wait(2.0), wait(1.0))),
        (repeat(wait(1.0), times=2), repeat(wait(1.0), times=3)),
        (parallel((ping,)), parallel((ping,), on_error="complete_all")),
        (parallel((ping,), collect_as="a"), parallel((ping,), collect_as="b")),
        (race((ping, pong)), race((pong, ping))),
        (each("items", add_item), each("others", add_item)),
        (timeout(wait(1.0), 0.5), timeout(wait(1.0), 0.5, default=None)),
    ],
    ids=repr,
)
def test_steps_built_from_different_arguments_differ(first: Step[Any], second: Step[Any]) -> None:
    assert first != second
    assert not (first == second)


@pytest.mark.parametrize("name", HASHABLE)
def test_steps_with_hashable_arguments_are_hashable(name: str) -> None:
    first, second = STEP_FACTORIES[name](), STEP_FACTORIES[name]()
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert {first: "seen"}[second] == "seen"


def _normalized(text: str) -> str:
    return text.lower().replace("_", "")


@pytest.mark.parametrize(
    ("step", "constructor", "arguments"),
    [
        (wait(0.5), "wait", ["0.5"]),
        (debounce(0.25), "debounce", ["0.25"]),
        (wait_until(is_dirty, timeout=1.5), "wait_until", ["is_dirty", "1.5"]),
        (receive(match=is_text, timeout=2.5), "receive", ["is_text", "2.5"]),
        (set_state(mark_dirty), "set_state", ["mark_dirty"]),
        (get_state(), "get_state", []),
        (
            run(fetch_book, retries=3, backoff="exponential", base_delay=0.2),
            "run",
            ["fetch_book", "3", "exponential", "0.2"],
        ),
        (sequence(wait(0.5), set_state(mark_dirty)), "sequence", ["0.5", "mark_dirty"]),
        (repeat(wait(0.5), times=3), "repeat", ["0.5", "3"]),
        (parallel((ping, pong), collect_as="pings"), "parallel", ["ping", "pong", "pings"]),
        (race((ping, pong)), "race", ["ping", "pong"]),
        (each("items", add_item), "each", ["items", "add_item"]),
        (timeout(wait(0.5), 1.5), "timeout", ["0.5", "1.5"]),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_step_repr_shows_its_constructor_and_arguments(
    step: Step[Any], constructor: str, arguments: list[str]
) -> None:
    shown = repr(step)
    assert not shown.startswith("<"), shown
    assert _normalized(constructor) in _normalized(shown), shown
    for argument in arguments:
        assert argument in shown, (argument, shown)


# --- `yield from step` is `yield step` -------------------------------------------------------


def add_one(state: int) -> Ok[int]:
    return Ok(state + 1)


def describe_state(state: int) -> str:
    return f"at {state}"


def times_ten(state: int) -> int:
    return state * 10


def test_yield_from_a_step_gives_what_yield_gives(coflow_backend: Any) -> None:
    results: list[Any] = []

    @coflow.flow(initial_state=0)
    def mixed() -> FlowGenerator:
        results.append((yield run(add_one)))
        results.append((yield from run(add_one)))
        results.append((yield run(describe_state)))
        results.append((yield from run(describe_state)))
        results.append((yield set_state(times_ten)))
        results.append((yield from set_state(times_ten)))
        results.append((yield get_state()))
        results.append((yield from get_state()))

    runner = coflow.start(mixed, backend=coflow_backend)

    assert runner.result(timeout=5) == 200
    assert results == [1, 2, "at 2", "at 2", 20, 200, 200, 200]


def test_an_error_of_a_step_used_with_yield_from_is_raised_at_that_line(
    coflow_backend: Any,
) -> None:
    failure = ConnectionError("service down")
    caught: list[BaseException] = []

    def fail(state: Any) -> Any:
        raise failure

    def flow_body() -> FlowGenerator:
        try:
            yield from run(fail)
        except ConnectionError as error:
            caught.append(error)
        yield from set_state(lambda state: "recovered")

    runner = coflow.start(flow_body, backend=coflow_backend)

    assert runner.result(timeout=5) == "recovered"
    assert caught == [failure]
    assert caught[0] is failure


# --- stepping a flow by hand, with no backend (redux-saga style) ----------------------------


@coflow.flow(initial_state={"dirty": False, "book_id": "b1"})
def sync_book() -> FlowGenerator:
    yield wait_until(is_dirty)
    yield debounce(0.5)
    yield set_state(mark_processing)
    try:
        yield run(push_book, retries=3, backoff="exponential", base_delay=0.2)
    except RetriesExhausted:
        yield set_state(mark_failed)
        return "failed"
    return "synced"


def test_a_flow_stepped_by_hand_yields_the_expected_steps() -> None:
    saga = sync_book()

    assert next(saga) == wait_until(is_dirty)
    assert saga.send({"dirty": True, "book_id": "b1"}) == debounce(0.5)
    assert saga.send({"dirty": True, "book_id": "b1"}) == set_state(mark_processing)
    assert saga.send({"dirty": "processing", "book_id": "b1"}) == run(
        push_book, retries=3, backoff="exponential", base_delay=0.2
    )
    with pytest.raises(StopIteration) as finished:
        saga.send({"dirty": False, "book_id": "b1"})
    assert finished.value.value == "synced"


def test_a_flow_stepped_by_hand_handles_an_error_thrown_at_its_yield() -> None:
    saga = sync_book()
    next(saga)
    saga.send({"dirty": True, "book_id": "b1"})
    saga.send({"dirty": True, "book_id": "b1"})
    saga.send({"dirty": "processing", "book_id": "b1"})

    compensation = saga.throw(RetriesExhausted(4, ConnectionError("down")))

    assert compensation == set_state(mark_failed)
    with pytest.raises(StopIteration) as finished:
        saga.send({"dirty": "failed", "book_id": "b1"})
    assert finished.value.value == "failed"


def test_yield_from_a_step_yields_the_step_itself_when_stepped_by_hand() -> None:
    @coflow.flow(initial_state=0)
    def typed() -> FlowGenerator:
        fetched = yield from run(fetch_book, retries=2)
        yield from set_state(lambda state: fetched)
        return fetched

    saga = typed()

    assert next(saga) == run(fetch_book, retries=2)
    step = saga.send("book")
    assert isinstance(step, Step)
    with pytest.raises(StopIteration) as finished:
        saga.send("book")
    assert finished.value.value == "book"


# --- coflow.flow -----------------------------------------------------------------------------


def test_a_decorated_flow_stays_callable_and_returns_a_new_generator_each_call() -> None:
    first, second = sync_book(), sync_book()

    assert isinstance(sync_book, coflow.Flow)
    assert all(inspect.isgenerator(made) for made in (first, second))
    assert first is not second
    assert next(first) == wait_until(is_dirty)
    # Advancing one generator leaves the other at its start.
    assert first.send({"dirty": True}) == debounce(0.5)
    assert next(second) == wait_until(is_dirty)


def test_a_decorated_flow_passes_call_arguments_to_the_function() -> None:
    @coflow.flow(initial_state=None)
    def fetch(url: str, attempts: int = 1) -> FlowGenerator:
        yield run(fetch_book, retries=attempts)
        return url

    saga = fetch("https://example.org/b1", attempts=3)

    assert next(saga) == run(fetch_book, retries=3)
    with pytest.raises(StopIteration) as finished:
        saga.send(None)
    assert finished.value.value == "https://example.org/b1"


def test_a_flow_is_named_after_its_function_unless_given_a_name(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=0)
    def import_books() -> FlowGenerator:
        yield set_state(lambda state: state + 1)

    @coflow.flow(initial_state=0, name="books-importer")
    def renamed() -> FlowGenerator:
        yield set_state(lambda state: state + 1)

    assert import_books.name == "import_books"
    assert renamed.name == "books-importer"
    runner = coflow.start(import_books, backend=coflow_backend)
    assert runner.name == "import_books"
    assert runner.flow is import_books
    assert runner.result(timeout=5) == 1


def test_flow_builds_a_flow_from_a_step_tree(coflow_backend: Any, timeline: Any) -> None:
    def logged_add_one(state: int) -> int:
        timeline.log(("state", state + 1))
        return state + 1

    tree = coflow.flow(
        sequence(set_state(logged_add_one), wait(0.1), repeat(set_state(logged_add_one), times=2)),
        initial_state=0,
        name="tree",
    )

    assert isinstance(tree, coflow.Flow)
    assert tree.name == "tree"
    runner = coflow.start(tree, backend=coflow_backend)
    assert runner.result(timeout=5) == 3
    assert runner.status == "done"
    timeline.assert_matches([(0.0, ("state", 1)), (0.1, ("state", 2)), (0.1, ("state", 3))])


# --- bad input is refused when the step is built ---------------------------------------------

BAD_DELAYS = [
    pytest.param(-1, id="negative"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="infinite"),
]

DELAY_TAKERS: dict[str, Callable[[float], Any]] = {
    "wait": lambda seconds: wait(seconds),
    "debounce": lambda seconds: debounce(seconds),
    "wait_until timeout": lambda seconds: wait_until(is_dirty, timeout=seconds),
    "receive timeout": lambda seconds: receive(timeout=seconds),
    "run base_delay": lambda seconds: run(fetch_book, retries=1, base_delay=seconds),
    "run max_delay": lambda seconds: run(fetch_book, retries=1, max_delay=seconds),
    "run timeout": lambda seconds: run(fetch_book, timeout=seconds),
    "timeout seconds": lambda seconds: timeout(wait(0.1), seconds),
}


@pytest.mark.parametrize("delay", BAD_DELAYS)
@pytest.mark.parametrize("taker", list(DELAY_TAKERS))
def test_a_bad_delay_is_a_value_error_naming_the_value(taker: str, delay: float) -> None:
    with pytest.raises(ValueError) as refused:
        DELAY_TAKERS[taker](delay)
    assert str(delay) in str(refused.value).lower()


@pytest.mark.parametrize("taker", list(DELAY_TAKERS))
def test_a_zero_delay_is_accepted(taker: str) -> None:
    assert isinstance(DELAY_TAKERS[taker](0.0), Step)


def test_negative_retries_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="-1"):
        run(fetch_book, retries=-1)
    with pytest.raises(ValueError, match="-2"):
        run(fetch_book, retry=RetryPolicy(retries=-2))


def test_an_unknown_backoff_name_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="quadratic"):
        run(fetch_book, retries=2, backoff="quadratic")
    with pytest.raises(ValueError, match="quadratic"):
        run(fetch_book, retry=RetryPolicy(retries=2, backoff="quadratic"))


def test_an_unknown_on_error_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="ignore"):
        parallel((ping, pong), on_error="ignore")


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 2},
        {"backoff": "linear"},
        {"base_delay": 0.1},
        {"max_delay": 1.0},
        {"jitter": True},
        {"retry_on": (ConnectionError,)},
    ],
    ids=lambda options: next(iter(options)),
)
def test_a_retry_policy_and_separate_retry_options_together_are_a_type_error(
    options: dict[str, Any],
) -> None:
    with pytest.raises(TypeError):
        run(fetch_book, retry=RetryPolicy(retries=2), **options)


def test_a_retry_policy_is_a_comparable_value() -> None:
    policy = RetryPolicy(retries=3, backoff="exponential", base_delay=0.2, max_delay=1.0)

    assert policy == RetryPolicy(retries=3, backoff="exponential", base_delay=0.2, max_delay=1.0)
    assert policy != RetryPolicy(retries=2, backoff="exponential", base_delay=0.2, max_delay=1.0)
    assert policy != RetryPolicy(retries=3, backoff="linear", base_delay=0.2, max_delay=1.0)
    assert RetryPolicy() == RetryPolicy(retries=0, backoff="constant", base_delay=0.0)
    assert hash(policy) == hash(
        RetryPolicy(retries=3, backoff="exponential", base_delay=0.2, max_delay=1.0)
    )
    assert "3" in repr(policy) and "exponential" in repr(policy)
    with pytest.raises(AttributeError):
        policy.retries = 5  # type: ignore[misc]
    # A step built with equal policies is equal: the policy is part of the step's value.
    assert run(fetch_book, retry=policy) == run(
        fetch_book,
        retry=RetryPolicy(retries=3, backoff="exponential", base_delay=0.2, max_delay=1.0),
    )
    assert run(fetch_book, retry=policy) != run(fetch_book, retry=RetryPolicy(retries=1))
