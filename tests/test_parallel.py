"""``parallel``: run tasks concurrently, wait for all, results in task order."""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

import coflow
from coflow import Failure, FlowGenerator, get_state, parallel, set_state, wait
from coflow.testing import Timeline


def append(item: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda state: {**state, "log": [*state["log"], item]}


def test_parallel_collects_in_task_order(coflow_backend: Any, timeline: Timeline) -> None:
    """Caravela case "parallel collects in task order"."""
    calls: list[str] = []
    lock = threading.Lock()

    def fetch(url: str) -> str:
        with lock:
            calls.append(url)
        return url.upper()

    def slow(label: str, pause: float) -> FlowGenerator:
        yield wait(pause)
        return label

    def main() -> FlowGenerator:
        results = yield parallel(
            [slow("slow", 0.2), partial(fetch, "a"), slow("mid", 0.1), partial(fetch, "b")],
            collect_as="fetched",
        )
        timeline.log(("parallel gave", results))

    runner = coflow.start(main, initial_state={"fetched": None}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"fetched": ["slow", "A", "mid", "B"]}
    assert sorted(calls) == ["a", "b"]
    # All tasks ran at once: the whole step took as long as its slowest task.
    timeline.assert_matches([(0.2, ("parallel gave", ["slow", "A", "mid", "B"]))])


def test_tasks_can_be_a_function_of_the_state(coflow_backend: Any, timeline: Timeline) -> None:
    def double(n: int) -> int:
        return 2 * n

    def square_later(n: int) -> FlowGenerator:
        yield wait(0.05 * n)
        return n * n

    def main() -> FlowGenerator:
        doubled = yield parallel(lambda s: [partial(double, n) for n in s["numbers"]])
        squared = yield parallel(lambda s: [square_later(n) for n in s["numbers"]])
        timeline.log((doubled, squared))

    runner = coflow.start(main, initial_state={"numbers": [3, 1, 2]}, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.15, ([6, 2, 4], [9, 1, 4]))])


def test_flow_tasks_share_the_parent_state_and_interleave(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def first() -> FlowGenerator:
        yield set_state(append("a1"))
        timeline.log("a1")
        yield wait(0.1)
        yield set_state(append("a2"))
        timeline.log("a2")
        return "a"

    def second(label: str) -> FlowGenerator:
        yield wait(0.05)
        seen = yield get_state()
        timeline.log((f"{label}1 sees", seen["log"]))
        yield set_state(append(f"{label}1"))
        yield wait(0.1)
        yield set_state(append(f"{label}2"))
        timeline.log(f"{label}2")
        return label

    def main() -> FlowGenerator:
        yield set_state(append("parent"))
        results = yield parallel([first, second("b")])
        state = yield get_state()
        timeline.log(("parent sees", results, state["log"]))

    runner = coflow.start(main, initial_state={"log": []}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"log": ["parent", "a1", "b1", "a2", "b2"]}
    timeline.assert_matches(
        [
            (0.0, "a1"),
            (0.05, ("b1 sees", ["parent", "a1"])),
            (0.1, "a2"),
            (0.15, "b2"),
            (0.15, ("parent sees", ["a", "b"], ["parent", "a1", "b1", "a2", "b2"])),
        ]
    )


def test_collect_as_on_a_dict_state_makes_a_new_dict(coflow_backend: Any) -> None:
    initial = {"keep": 1}
    seen: list[Any] = []

    def main() -> FlowGenerator:
        results = yield parallel([lambda: "x", lambda: "y"], collect_as="out")
        seen.append(results)

    runner = coflow.start(main, initial_state=initial, backend=coflow_backend)

    assert runner.result(timeout=5) == {"keep": 1, "out": ["x", "y"]}
    assert seen == [["x", "y"]]
    assert initial == {"keep": 1}, "the original state object must not be mutated"


@dataclasses.dataclass(frozen=True)
class Library:
    name: str
    books: list[str] | None = None


def test_collect_as_on_a_dataclass_state_uses_replace(coflow_backend: Any) -> None:
    initial = Library(name="city")

    def main() -> FlowGenerator:
        yield parallel([lambda: "dune", lambda: "emma"], collect_as="books")

    runner = coflow.start(main, initial_state=initial, backend=coflow_backend)

    assert runner.result(timeout=5) == Library(name="city", books=["dune", "emma"])
    assert initial.books is None


def test_collect_as_on_another_state_is_a_type_error_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state=["a", "list"], name="shelve_books")
    def shelve_books() -> FlowGenerator:
        try:
            yield parallel([lambda: 1], collect_as="out")
        except TypeError as error:
            caught.append(error)

    runner = coflow.start(shelve_books, backend=coflow_backend)

    assert runner.result(timeout=5) == ["a", "list"]
    assert len(caught) == 1
    message = str(caught[0])
    assert "shelve_books" in message, "the message names the flow"
    assert "out" in message or "list" in message, "the message names the value"


def test_fail_fast_raises_the_first_failure_and_cancels_the_siblings(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def failing() -> FlowGenerator:
        yield wait(0.1)
        raise ValueError("broken")

    def sibling(label: str) -> FlowGenerator:
        try:
            yield wait(1.0)
            timeline.log(f"{label} finished")
        finally:
            timeline.log(f"{label} cleanup")
            yield wait(0.05)
            yield set_state(append(f"{label} cleaned"))

    def main() -> FlowGenerator:
        try:
            yield parallel([sibling("left"), failing, sibling("right")])
        except ValueError as error:
            # The failure reaches the flow only once the siblings' cleanup has finished.
            state = yield get_state()
            timeline.log(("caught", str(error), sorted(state["log"])))

    runner = coflow.start(main, initial_state={"log": []}, backend=coflow_backend)

    assert sorted(runner.result(timeout=5)["log"]) == ["left cleaned", "right cleaned"]
    assert runner.status == "done"
    labels = timeline.labels()
    assert sorted(labels[:2]) == ["left cleanup", "right cleanup"], timeline.entries
    assert labels[2:] == [("caught", "broken", ["left cleaned", "right cleaned"])]
    first_cleanup, caught_at = timeline.entries[0][0], timeline.entries[-1][0]
    assert first_cleanup == pytest.approx(0.1, abs=timeline.tolerance or 1e-9)
    assert caught_at >= 0.15 - timeline.tolerance - 1e-9


def test_fail_fast_with_a_failing_callable(coflow_backend: Any, timeline: Timeline) -> None:
    def boom() -> None:
        raise KeyError("missing")

    def sibling() -> FlowGenerator:
        yield wait(0.15)
        timeline.log("sibling finished")

    def main() -> FlowGenerator:
        try:
            yield parallel([sibling, boom])
        except KeyError as error:
            timeline.log(("caught", error.args))
        yield wait(0.3)  # past the moment the sibling would have finished
        timeline.log("flow done")

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.0, ("caught", ("missing",))), (0.3, "flow done")])


def test_an_uncaught_fail_fast_failure_fails_the_flow(coflow_backend: Any) -> None:
    def boom() -> None:
        raise ValueError("bad task")

    def main() -> FlowGenerator:
        yield parallel([boom, lambda: 1])

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, ValueError)
    assert runner.status == "failed"


def test_complete_all_puts_a_failure_in_place_of_each_failed_result(
    coflow_backend: Any, timeline: Timeline
) -> None:
    value_error = ValueError("callable failed")

    def bad_callable() -> None:
        raise value_error

    def bad_flow() -> FlowGenerator:
        yield wait(0.05)
        raise KeyError("flow failed")

    def good_flow() -> FlowGenerator:
        yield wait(0.2)
        return "late"

    def main() -> FlowGenerator:
        results = yield parallel(
            [lambda: 1, bad_callable, bad_flow, good_flow], on_error="complete_all"
        )
        timeline.log("parallel returned")
        seen.append(results)

    seen: list[Any] = []
    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    [results] = seen
    assert len(results) == 4
    assert results[0] == 1
    assert isinstance(results[1], Failure) and results[1].error is value_error
    assert isinstance(results[2], Failure) and isinstance(results[2].error, KeyError)
    assert results[3] == "late"
    # It waited for every task, failed or not.
    timeline.assert_matches([(0.2, "parallel returned")])


def test_an_empty_task_list_gives_an_empty_list(coflow_backend: Any, timeline: Timeline) -> None:
    def main() -> FlowGenerator:
        results = yield parallel([], collect_as="out")
        from_state = yield parallel(lambda s: [])
        timeline.log((results, from_state))

    runner = coflow.start(main, initial_state={}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"out": []}
    timeline.assert_matches([(0.0, ([], []))])


def test_finished_work_and_joins_leave_no_reference_cycle_behind(coflow_backend: Any) -> None:
    """A join's branches and a ``run`` step's work are freed as they end, not at the next
    garbage collection.

    A join of thousands of branches that waited for the collector would make
    every fan-out pay for a full collection of the process's heap.
    """

    def flow_branch() -> FlowGenerator:
        yield set_state(lambda state: state)

    def main() -> FlowGenerator:
        yield parallel([lambda: None, flow_branch] * 3)
        yield coflow.run(lambda state: None)
        yield coflow.run(lambda state: None, retries=1, timeout=5)

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        coflow.start(main, backend=coflow_backend).result(timeout=5)
        gc.collect()
        left = {type(item).__name__ for item in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not left & {"WorkBranch", "BranchTask", "_AllJoin", "Work", "_OnlyAttempt", "_PoolWork"}
