"""debounce(seconds): continue once the state has been quiet that long; every change restarts it."""

from __future__ import annotations

from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, FlowStopped, debounce, parallel, set_state, wait, wait_until
from coflow.testing import After


def test_caravela_debounce_fires_once_after_a_burst_of_signals(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    @coflow.flow(initial_state={"dirty": False, "edits": 0})
    def sync_book() -> FlowGenerator:
        while True:
            yield wait_until(lambda state: state["dirty"])
            state = yield debounce(0.1)
            timeline.log(("sync", state["edits"]))
            yield set_state(lambda state: {**state, "dirty": False})

    runner = coflow.start(sync_book, backend=coflow_backend)

    def edit() -> None:
        runner.signal(lambda state: {"dirty": True, "edits": state["edits"] + 1})

    for moment in (0.05, 0.1, 0.15):
        after(moment, edit)
    after(0.4, runner.stop)

    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    # The first edit unblocks wait_until at 0.05; the next two restart the window.
    timeline.assert_matches([(0.25, ("sync", 3))])
    assert runner.get_state() == {"dirty": False, "edits": 3}


def test_debounce_with_no_change_waits_exactly_its_window(
    coflow_backend: Any, timeline: Any
) -> None:
    def body() -> FlowGenerator:
        timeline.log("start")
        yield debounce(0.2)
        timeline.log("quiet")

    runner = coflow.start(body, initial_state=0, backend=coflow_backend)

    assert runner.result(timeout=5) == 0
    timeline.assert_matches([(0.0, "start"), (0.2, "quiet")])


def test_a_signal_at_75_percent_of_the_window_moves_the_end_to_175_percent(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        timeline.log("start")
        yield debounce(0.2)
        timeline.log("quiet")

    runner = coflow.start(body, initial_state=0, backend=coflow_backend)

    def signal() -> None:
        timeline.log("signal")
        runner.signal(lambda state: state + 1)

    after(0.15, signal)

    assert runner.result(timeout=5) == 1
    timeline.assert_matches([(0.0, "start"), (0.15, "signal"), (0.35, "quiet")])


def test_a_signal_that_leaves_the_state_equal_still_restarts_debounce(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        yield debounce(0.2)
        timeline.log("quiet")

    runner = coflow.start(body, initial_state={"n": 0}, backend=coflow_backend)
    after(0.1, lambda: runner.signal(lambda state: state))

    assert runner.result(timeout=5) == {"n": 0}
    timeline.assert_matches([(0.3, "quiet")])


def test_a_set_state_by_a_parallel_branch_restarts_debounce(
    coflow_backend: Any, timeline: Any
) -> None:
    def settler() -> FlowGenerator:
        yield debounce(0.2)
        timeline.log("quiet")

    def changer() -> FlowGenerator:
        yield wait(0.1)
        timeline.log("change")
        yield set_state(lambda state: state + 1)

    def body() -> FlowGenerator:
        yield parallel([settler(), changer()])

    runner = coflow.start(body, initial_state=0, backend=coflow_backend)

    assert runner.result(timeout=5) == 1
    timeline.assert_matches([(0.1, "change"), (0.3, "quiet")])


def test_debounce_gives_the_state_after_the_quiet_period(coflow_backend: Any, after: After) -> None:
    results: list[Any] = []

    def body() -> FlowGenerator:
        results.append((yield debounce(0.1)))

    runner = coflow.start(body, initial_state={"n": 0}, backend=coflow_backend)
    after(0.05, lambda: runner.signal(lambda state: {"n": 1}))
    after(0.1, lambda: runner.signal(lambda state: {"n": 2}))

    assert runner.result(timeout=5) == {"n": 2}
    assert results == [{"n": 2}]
