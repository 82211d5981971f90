"""wait(seconds): a pause of exactly that long, on the backend's clock."""

from __future__ import annotations

from typing import Any

import coflow
from coflow import FlowGenerator, parallel, wait


def test_wait_pauses_for_the_given_time(coflow_backend: Any, timeline: Any) -> None:
    results: list[Any] = []

    def body() -> FlowGenerator:
        timeline.log("start")
        results.append((yield wait(0.1)))
        timeline.log("after 0.1")
        results.append((yield wait(0.2)))
        timeline.log("after 0.3")

    runner = coflow.start(body, initial_state="unchanged", backend=coflow_backend)

    assert runner.result(timeout=5) == "unchanged"
    assert results == [None, None]
    timeline.assert_matches([(0.0, "start"), (0.1, "after 0.1"), (0.3, "after 0.3")])


def test_flows_that_wait_interleave_by_time(coflow_backend: Any, timeline: Any) -> None:
    def ticker(name: str, pauses: list[float]) -> FlowGenerator:
        for pause in pauses:
            yield wait(pause)
            timeline.log(name)

    # Both start in one instant of the backend: two coflow.start calls from the
    # test's thread could be a scheduler pause apart, and the order with them.
    both = parallel([ticker("fast", [0.1, 0.1, 0.1]), ticker("slow", [0.15, 0.1])])
    coflow.start(both, backend=coflow_backend).result(timeout=5)
    timeline.assert_matches(
        [(0.1, "fast"), (0.15, "slow"), (0.2, "fast"), (0.25, "slow"), (0.3, "fast")]
    )


def test_wait_zero_takes_no_time_and_lets_ready_work_run_first(
    coflow_backend: Any, timeline: Any
) -> None:
    def yielding(name: str) -> FlowGenerator:
        timeline.log(f"{name}1")
        yield wait(0)
        timeline.log(f"{name}2")
        yield wait(0)
        timeline.log(f"{name}3")

    def body() -> FlowGenerator:
        yield parallel([yielding("a"), yielding("b")])

    runner = coflow.start(body, backend=coflow_backend)

    runner.result(timeout=5)
    timeline.assert_matches(
        [(0.0, "a1"), (0.0, "b1"), (0.0, "a2"), (0.0, "b2"), (0.0, "a3"), (0.0, "b3")]
    )


def test_a_flow_waiting_does_not_hold_up_another_flow(coflow_backend: Any, timeline: Any) -> None:
    def sleeper() -> FlowGenerator:
        yield wait(0.2)
        timeline.log("sleeper woke")

    def busy() -> FlowGenerator:
        for step in range(3):
            yield coflow.set_state(lambda state: state + 1)
            timeline.log(("busy", step))

    sleeping = coflow.start(sleeper, backend=coflow_backend)
    working = coflow.start(busy, initial_state=0, backend=coflow_backend)

    assert working.result(timeout=5) == 3
    sleeping.result(timeout=5)
    timeline.assert_matches(
        [(0.0, ("busy", 0)), (0.0, ("busy", 1)), (0.0, ("busy", 2)), (0.2, "sleeper woke")]
    )
