"""``sequence``, ``repeat``, sub-flows and step-tree flows: how flows compose in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, get_state, repeat, sequence, set_state, wait
from coflow.testing import After, Timeline


def test_sequence_runs_steps_in_order_and_gives_the_last_result(
    coflow_backend: Any, timeline: Timeline
) -> None:
    results: list[Any] = []

    def main() -> FlowGenerator:
        result = yield sequence(
            set_state(lambda n: n + 1),
            wait(0.1),
            set_state(lambda n: n * 10),
        )
        timeline.log(("sequence gave", result))
        typed = yield from sequence(wait(0.1), get_state())
        timeline.log(("typed sequence gave", typed))
        results.append((result, typed))

    runner = coflow.start(main, initial_state=1, backend=coflow_backend)

    assert runner.result(timeout=5) == 20
    assert results == [(20, 20)]
    timeline.assert_matches([(0.1, ("sequence gave", 20)), (0.2, ("typed sequence gave", 20))])


def test_repeat_times_runs_the_body_that_many_times_and_gives_none(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def body() -> FlowGenerator:
        state = yield set_state(lambda n: n + 1)
        timeline.log(("round", state))
        yield wait(0.1)

    def main() -> FlowGenerator:
        result = yield repeat(body, times=3)
        timeline.log(("repeat gave", result))
        step_result = yield repeat(set_state(lambda n: n * 2), times=2)
        never = yield repeat(set_state(lambda n: n + 1000), times=0)
        timeline.log(("after", step_result, never))

    runner = coflow.start(main, initial_state=0, backend=coflow_backend)

    assert runner.result(timeout=5) == 12
    timeline.assert_matches(
        [
            (0.0, ("round", 1)),
            (0.1, ("round", 2)),
            (0.2, ("round", 3)),
            (0.3, ("repeat gave", None)),
            (0.3, ("after", None, None)),
        ]
    )


def test_repeat_without_times_runs_until_the_flow_is_stopped(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    def tick(n: int) -> int:
        timeline.log(("tick", n + 1))
        return n + 1

    forever = coflow.flow(repeat(sequence(wait(0.1), set_state(tick))), initial_state=0)
    runner = coflow.start(forever, backend=coflow_backend)
    after(0.35, lambda: runner.stop())

    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert runner.status == "stopped"
    assert runner.get_state() == 3
    timeline.assert_matches([(0.1, ("tick", 1)), (0.2, ("tick", 2)), (0.3, ("tick", 3))])


def test_a_generator_object_as_repeat_body_is_a_type_error_that_says_so(
    coflow_backend: Any,
) -> None:
    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        yield wait(0.1)

    def main() -> FlowGenerator:
        generator = body()
        try:
            yield repeat(generator, times=2)
        except TypeError as error:
            caught.append(error)
        finally:
            generator.close()

    runner = coflow.start(main, backend=coflow_backend)
    runner.result(timeout=5)

    assert len(caught) == 1
    assert "generator" in str(caught[0])


def test_a_yielded_generator_object_runs_as_a_sub_flow_on_the_same_state(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def append(item: Any) -> Callable[[list[Any]], list[Any]]:
        return lambda items: [*items, item]

    def grandchild() -> FlowGenerator:
        yield set_state(append("grandchild"))
        return "deep"

    def child(label: str, pause: float) -> FlowGenerator:
        seen = yield get_state()
        timeline.log(("child sees", label, tuple(seen)))
        yield set_state(append(label))
        yield wait(pause)
        inner = yield grandchild()
        return f"{label}:{inner}"

    def main() -> FlowGenerator:
        yield set_state(append("parent"))
        first = yield child("a", 0.1)
        second = yield from child("b", 0.05)
        timeline.log(("returned", first, second))

    runner = coflow.start(main, initial_state=[], backend=coflow_backend)

    assert runner.result(timeout=5) == ["parent", "a", "grandchild", "b", "grandchild"]
    timeline.assert_matches(
        [
            (0.0, ("child sees", "a", ("parent",))),
            (0.1, ("child sees", "b", ("parent", "a", "grandchild"))),
            (0.15, ("returned", "a:deep", "b:deep")),
        ]
    )


def test_a_step_tree_is_a_flow(coflow_backend: Any, timeline: Timeline) -> None:
    def mark(label: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def update(state: dict[str, Any]) -> dict[str, Any]:
            timeline.log(label)
            return {**state, "log": [*state["log"], label]}

        return update

    tree = coflow.flow(
        sequence(
            set_state(mark("start")),
            wait(0.1),
            repeat(sequence(set_state(mark("tick")), wait(0.05)), times=2),
            set_state(mark("end")),
        ),
        initial_state={"log": []},
        name="step-tree",
    )
    runner = coflow.start(tree, backend=coflow_backend)

    assert runner.name == "step-tree"
    assert runner.result(timeout=5) == {"log": ["start", "tick", "tick", "end"]}
    assert runner.status == "done"
    timeline.assert_matches([(0.0, "start"), (0.1, "tick"), (0.15, "tick"), (0.2, "end")])
