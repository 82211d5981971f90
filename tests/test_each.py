"""``each``: a loop over items in the state that commits the state after every item."""

from __future__ import annotations

from typing import Any

import pytest

import coflow
from coflow import Error, FlowGenerator, Ok, Skip, each, get_state, set_state, wait
from coflow.testing import Timeline


def add_to_total(item: int, state: dict[str, Any]) -> Ok[dict[str, Any]]:
    return Ok({**state, "total": state["total"] + item})


def test_each_sums(coflow_backend: Any, timeline: Timeline) -> None:
    """Caravela case "each sums"."""

    def main() -> FlowGenerator:
        after_loop = yield each("numbers", add_to_total)
        timeline.log(("each gave", after_loop["total"]))

    runner = coflow.start(
        main, initial_state={"numbers": [1, 2, 3, 4], "total": 0}, backend=coflow_backend
    )

    assert runner.result(timeout=5) == {"numbers": [1, 2, 3, 4], "total": 10}
    timeline.assert_matches([(0.0, ("each gave", 10))])


def test_each_with_skip(coflow_backend: Any) -> None:
    """Caravela case "each with Skip": a skipped item leaves the state as it was."""
    seen: list[Any] = []

    def keep_valid(book: dict[str, Any], state: dict[str, Any]) -> Any:
        seen.append(book["title"])
        if not book["ok"]:
            return Skip(f"bad book {book['title']}")
        return Ok({**state, "results": [*state["results"], book["title"]]})

    fetched = [
        {"title": "dune", "ok": True},
        {"title": "torn", "ok": False},
        {"title": "emma", "ok": True},
    ]
    flow = coflow.flow(
        each("fetched", keep_valid), initial_state={"fetched": fetched, "results": []}
    )
    runner = coflow.start(flow, backend=coflow_backend)

    assert runner.result(timeout=5) == {"fetched": fetched, "results": ["dune", "emma"]}
    assert seen == ["dune", "torn", "emma"]


def test_each_over_a_function_of_the_state(coflow_backend: Any) -> None:
    def main() -> FlowGenerator:
        yield each(lambda s: range(1, s["n"] + 1), add_to_total)

    runner = coflow.start(main, initial_state={"n": 4, "total": 100}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"n": 4, "total": 110}


def test_progress_made_before_an_error_is_kept_and_observed(
    coflow_backend: Any, timeline: Timeline
) -> None:
    events: list[Any] = []

    def import_item(item: int, state: dict[str, Any]) -> Any:
        if item == 3:
            raise ValueError(f"cannot import {item}")
        return Ok({**state, "done": [*state["done"], item]})

    def main() -> FlowGenerator:
        try:
            yield each("items", import_item)
        except ValueError as error:
            state = yield get_state()
            timeline.log(("caught", str(error), state["done"]))

    initial = {"items": [1, 2, 3, 4], "done": []}
    runner = coflow.start(main, initial_state=initial, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == {"items": [1, 2, 3, 4], "done": [1, 2]}
    timeline.assert_matches([(0.0, ("caught", "cannot import 3", [1, 2]))])
    states = [event.state for event in events if isinstance(event, coflow.FlowState)]
    assert states[-2:] == [
        {"items": [1, 2, 3, 4], "done": [1]},
        {"items": [1, 2, 3, 4], "done": [1, 2]},
    ], "the state is committed (and notified) after every item"
    assert isinstance(events[-1], coflow.FlowDone)


def test_an_uncaught_error_fails_the_flow_with_the_progress_kept(coflow_backend: Any) -> None:
    events: list[Any] = []

    def import_item(item: int, state: dict[str, Any]) -> Any:
        if item == 2:
            return Error(LookupError("no such item"))
        return Ok({**state, "done": [*state["done"], item]})

    def main() -> FlowGenerator:
        yield each("items", import_item)

    runner = coflow.start(
        main,
        initial_state={"items": [1, 2, 3], "done": []},
        notify=events.append,
        backend=coflow_backend,
    )

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, LookupError)
    assert runner.get_state() == {"items": [1, 2, 3], "done": [1]}
    assert isinstance(events[-1], coflow.FlowError)
    assert isinstance(events[-1].reason, LookupError)
    assert {"items": [1, 2, 3], "done": [1]} in [
        event.state for event in events if isinstance(event, coflow.FlowState)
    ]


def test_error_results_are_raised_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []
    reason = KeyError("the reason itself")

    def main() -> FlowGenerator:
        try:
            yield each("items", lambda item, state: Error(reason))
        except KeyError as error:
            caught.append(error)
        try:
            yield each("items", lambda item, state: Error("not an exception"))
        except coflow.StepFailed as error:
            caught.append(error)

    runner = coflow.start(main, initial_state={"items": ["x"]}, backend=coflow_backend)

    runner.result(timeout=5)
    assert len(caught) == 2
    assert caught[0] is reason
    assert isinstance(caught[1], coflow.StepFailed)
    assert caught[1].reason == "not an exception"


def test_a_missing_key_or_a_non_iterable_is_raised_at_the_yield(coflow_backend: Any) -> None:
    caught: list[BaseException] = []

    @coflow.flow(initial_state={"count": 5}, name="walk_items")
    def walk_items() -> FlowGenerator:
        try:
            yield each("absent_key", add_to_total)
        except Exception as error:
            caught.append(error)
        try:
            yield each("count", add_to_total)
        except Exception as error:
            caught.append(error)
        try:
            yield each(lambda s: s["count"], add_to_total)
        except Exception as error:
            caught.append(error)

    runner = coflow.start(walk_items, backend=coflow_backend)

    assert runner.result(timeout=5) == {"count": 5}
    assert len(caught) == 3, caught
    missing, not_iterable, not_iterable_from_fn = (str(error) for error in caught)
    assert "absent_key" in missing and "walk_items" in missing, missing
    assert "5" in not_iterable and "walk_items" in not_iterable, not_iterable
    assert "5" in not_iterable_from_fn and "walk_items" in not_iterable_from_fn


def test_a_generator_function_callback_runs_as_a_sub_flow_per_item(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def import_one(item: str) -> FlowGenerator:
        before = yield get_state()
        yield wait(0.1)
        yield set_state(lambda s: {**s, "done": [*s["done"], item]})
        timeline.log((item, before["done"]))

    def main() -> FlowGenerator:
        after_loop = yield each("items", import_one)
        timeline.log(("each gave", after_loop["done"]))

    runner = coflow.start(
        main, initial_state={"items": ["a", "b", "c"], "done": []}, backend=coflow_backend
    )

    assert runner.result(timeout=5) == {"items": ["a", "b", "c"], "done": ["a", "b", "c"]}
    timeline.assert_matches(
        [
            (0.1, ("a", [])),
            (0.2, ("b", ["a"])),
            (0.3, ("c", ["a", "b"])),
            (0.3, ("each gave", ["a", "b", "c"])),
        ]
    )
