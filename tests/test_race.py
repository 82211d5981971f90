"""``race``: the first task to finish wins; the others are cancelled and cleaned up first."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, get_state, race, set_state, wait
from coflow.testing import Timeline


def append(item: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda state: {**state, "log": [*state["log"], item]}


def finishes(label: str, pause: float) -> FlowGenerator:
    yield wait(pause)
    return label


def test_the_winner_result_is_returned(coflow_backend: Any, timeline: Timeline) -> None:
    def main() -> FlowGenerator:
        winner = yield race([finishes("slow", 0.2), finishes("fast", 0.1)])
        timeline.log(("winner", winner))
        instant = yield race([finishes("waits", 0.1), lambda: "callable"])
        timeline.log(("winner", instant))

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches([(0.1, ("winner", "fast")), (0.1, ("winner", "callable"))])


def test_the_loser_is_cancelled_and_its_cleanup_finishes_before_the_race_returns(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def loser() -> FlowGenerator:
        try:
            yield wait(1.0)
            timeline.log("loser finished")
        finally:
            timeline.log("loser cleanup starts")
            yield wait(0.1)
            yield set_state(append("loser cleaned"))
            timeline.log("loser cleanup ends")

    def main() -> FlowGenerator:
        winner = yield race([loser, finishes("winner", 0.1)])
        state = yield get_state()
        timeline.log(("race returned", winner, state["log"]))

    runner = coflow.start(main, initial_state={"log": []}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"log": ["loser cleaned"]}
    timeline.assert_matches(
        [
            (0.1, "loser cleanup starts"),
            (0.2, "loser cleanup ends"),
            (0.2, ("race returned", "winner", ["loser cleaned"])),
        ]
    )


def test_when_the_first_to_finish_failed_the_race_raises_its_error(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def failing() -> FlowGenerator:
        yield wait(0.1)
        raise ValueError("first and broken")

    def loser() -> FlowGenerator:
        try:
            yield wait(0.2)
            timeline.log("loser finished")
        finally:
            timeline.log("loser cleanup")

    def main() -> FlowGenerator:
        try:
            yield race([loser, failing])
        except ValueError as error:
            timeline.log(("caught", str(error)))

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    runner.result(timeout=5)
    assert runner.status == "done"
    timeline.assert_matches([(0.1, "loser cleanup"), (0.1, ("caught", "first and broken"))])


def test_a_failing_callable_that_finishes_first_fails_the_flow(coflow_backend: Any) -> None:
    def boom() -> None:
        raise KeyError("gone")

    def main() -> FlowGenerator:
        yield race([boom, finishes("late", 0.2)])

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, KeyError)
    assert runner.status == "failed"


@dataclasses.dataclass(frozen=True)
class Lookup:
    query: str
    answer: str | None = None


def test_collect_as_stores_the_winner(coflow_backend: Any, timeline: Timeline) -> None:
    def main() -> FlowGenerator:
        yield race([finishes("mirror", 0.15), finishes("primary", 0.05)], collect_as="answer")
        timeline.log("stored")

    runner = coflow.start(main, initial_state=Lookup(query="dune"), backend=coflow_backend)
    assert runner.result(timeout=5) == Lookup(query="dune", answer="primary")

    def on_dict() -> FlowGenerator:
        yield race([lambda: 42], collect_as="answer")

    initial = {"query": "emma"}
    runner = coflow.start(on_dict, initial_state=initial, backend=coflow_backend)
    assert runner.result(timeout=5) == {"query": "emma", "answer": 42}
    assert initial == {"query": "emma"}
    timeline.assert_matches([(0.05, "stored")])
