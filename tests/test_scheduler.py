"""The scheduler: depth costs nothing, busy flows do not starve others, ready flows run FIFO."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import pytest

import coflow
from coflow import (
    FlowException,
    FlowFailed,
    FlowGenerator,
    FlowStopped,
    get_state,
    sequence,
    set_state,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend
from coflow.testing import Timeline

DEPTH = 10_000  # far beyond Python's default recursion limit of 1,000


def nest(n: int) -> Generator[Any, Any, int]:
    """A sub-flow ``n`` levels deep that returns its depth."""
    if n:
        depth: int = yield nest(n - 1)
        return depth + 1
    yield wait(0.01)
    return 0


def nest_failing(n: int) -> Generator[Any, Any, int]:
    if n:
        depth: int = yield nest_failing(n - 1)
        return depth + 1
    yield wait(0.01)
    raise LookupError("bottom of the stack")


def nest_blocking(n: int, cleaned: list[Any]) -> Generator[Any, Any, None]:
    try:
        if n:
            yield nest_blocking(n - 1, cleaned)
        else:
            yield set_state(lambda s: "deepest")
            yield wait_until(lambda s: False)
    finally:
        cleaned.append(n)


# Depth


def test_sub_flows_nested_ten_thousand_deep(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=None)
    def deep() -> FlowGenerator:
        depth = yield nest(DEPTH)
        yield set_state(lambda s: depth)

    runner = coflow.start(deep, backend=coflow_backend)
    assert runner.result(timeout=5) == DEPTH


def test_error_at_the_bottom_of_ten_thousand_sub_flows_reaches_the_top(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=None)
    def deep() -> FlowGenerator:
        try:
            yield nest_failing(DEPTH)
        except LookupError as err:
            message = str(err)
            yield set_state(lambda s: ("caught at the top", message))

    runner = coflow.start(deep, backend=coflow_backend)
    assert runner.result(timeout=5) == ("caught at the top", "bottom of the stack")


def test_uncaught_error_ten_thousand_sub_flows_deep_fails_the_flow(coflow_backend: Any) -> None:
    @coflow.flow(initial_state=None)
    def deep() -> FlowGenerator:
        yield nest_failing(DEPTH)

    runner = coflow.start(deep, backend=coflow_backend)
    with pytest.raises(FlowFailed) as excinfo:
        runner.result(timeout=5)
    assert isinstance(excinfo.value.__cause__, LookupError)


def test_stop_cancels_all_ten_thousand_sub_flows_innermost_first(coflow_backend: Any) -> None:
    cleaned: list[Any] = []

    @coflow.flow(initial_state=None)
    def deep() -> FlowGenerator:
        try:
            yield nest_blocking(DEPTH, cleaned)
        finally:
            cleaned.append("root")

    def stop_once_deepest(event: Any) -> None:
        if isinstance(event, coflow.FlowState) and event.state == "deepest":
            event.runner.stop()  # every level is nested by now, however slow the machine

    runner = coflow.start(deep, backend=coflow_backend, notify=stop_once_deepest)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    assert cleaned == [*range(DEPTH + 1), "root"]


def _deep_sequence() -> coflow.Step[Any]:
    step: coflow.Step[Any] = wait(0.01)
    for _ in range(DEPTH):
        step = sequence(step, set_state(lambda s: s + 1))
    return step


def test_sequence_nested_ten_thousand_deep_yielded_from_a_generator(coflow_backend: Any) -> None:
    step = _deep_sequence()

    @coflow.flow(initial_state=0)
    def deep() -> FlowGenerator:
        last = yield step
        yield set_state(lambda s: (s, last))

    runner = coflow.start(deep, backend=coflow_backend)
    assert runner.result(timeout=5) == (DEPTH, DEPTH)


def test_sequence_nested_ten_thousand_deep_as_a_step_tree_flow(coflow_backend: Any) -> None:
    tree = coflow.flow(_deep_sequence(), initial_state=0, name="deep_tree")
    runner = coflow.start(tree, backend=coflow_backend)
    assert runner.result(timeout=5) == DEPTH


def test_singly_wrapped_sequence_ten_thousand_deep(coflow_backend: Any) -> None:
    step: coflow.Step[Any] = set_state(lambda s: s + 1)
    for _ in range(DEPTH):
        step = sequence(step)

    @coflow.flow(initial_state=41)
    def deep() -> FlowGenerator:
        yield step

    runner = coflow.start(deep, backend=coflow_backend)
    assert runner.result(timeout=5) == 42


# Fairness


def test_never_blocking_flow_lets_other_ready_flows_progress(coflow_backend: Any) -> None:
    limit = 50_000
    neighbour_done = threading.Event()

    @coflow.flow(initial_state=0, name="busy_loop")
    def busy_loop() -> FlowGenerator:
        while not neighbour_done.is_set():
            count = yield set_state(lambda s: s + 1)
            if count >= limit:
                return

    busy_counts: list[int] = []
    runners: dict[str, coflow.Runner] = {}

    @coflow.flow(initial_state=0, name="neighbour")
    def neighbour() -> FlowGenerator:
        for _ in range(3):
            yield set_state(lambda s: s + 1)
            busy_counts.append(runners["busy"].get_state())
        neighbour_done.set()

    def start_both(_: Any) -> None:
        # From the scheduler, so the busy flow cannot run ahead before the neighbour starts.
        runners["busy"] = coflow.start(busy_loop, backend=coflow_backend)
        runners["other"] = coflow.start(neighbour, backend=coflow_backend)

    coflow.start(set_state(start_both), backend=coflow_backend).result(timeout=5)
    assert runners["other"].result(timeout=5) == 3
    final_busy_count = runners["busy"].result(timeout=5)
    # The neighbour ran all its steps while the busy flow was still going.
    assert len(busy_counts) == 3
    assert all(count < limit for count in busy_counts), busy_counts
    assert final_busy_count < limit


def test_never_blocking_flow_does_not_stop_timers(coflow_backend: Any, is_virtual: bool) -> None:
    neighbour_done = threading.Event()

    @coflow.flow(initial_state=0, name="busy_loop")
    def busy_loop() -> FlowGenerator:
        while not neighbour_done.is_set():
            yield set_state(lambda s: s + 1)

    @coflow.flow(initial_state=0, name="ticker")
    def ticker() -> FlowGenerator:
        for _ in range(3):
            yield wait(0.01)
            yield set_state(lambda s: s + 1)
        neighbour_done.set()

    if is_virtual:
        # Virtual time passes only when no work is ready, so the busy flow holds
        # the clock at its instant; the backend refuses to hang and names it.
        virtual = VirtualBackend(max_steps=5_000)
        coflow.start(busy_loop, backend=virtual)
        other = coflow.start(ticker, backend=virtual)
        with pytest.raises(FlowException, match="busy_loop"):
            other.result(timeout=5)
        return

    busy = coflow.start(busy_loop, backend=coflow_backend)
    other = coflow.start(ticker, backend=coflow_backend)
    assert other.result(timeout=5) == 3
    assert busy.result(timeout=5) > 0


# Ordering


def test_ready_flows_run_in_the_order_they_were_started(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def make(label: str) -> coflow.Flow:
        @coflow.flow(initial_state=0, name=label)
        def logger() -> FlowGenerator:
            timeline.log(label)
            yield get_state()
            yield wait(0.01)
            timeline.log(f"{label} again")

        return logger

    runners = [coflow.start(make(label), backend=coflow_backend) for label in "ABC"]
    for runner in runners:
        runner.result(timeout=5)
    timeline.assert_matches(
        [
            (0.0, "A"),
            (0.0, "B"),
            (0.0, "C"),
            (0.01, "A again"),
            (0.01, "B again"),
            (0.01, "C again"),
        ]
    )
