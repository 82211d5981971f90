"""Step-tree combinators: ``branch``, ``embed`` (a flow on part of the state) and ``timeout``."""

from __future__ import annotations

from typing import Any

import pytest

import coflow
from coflow import (
    FlowGenerator,
    branch,
    embed,
    get_state,
    parallel,
    sequence,
    set_state,
    timeout,
    wait,
)
from coflow.testing import After, Timeline


def shelve() -> FlowGenerator:
    yield wait(0.1)
    yield set_state(lambda s: {**s, "shelf": "films"})
    return "shelved a film"


CASES = {
    "book": set_state(lambda s: {**s, "shelf": "books"}),
    "film": shelve,
}


def test_branch_runs_the_case_the_selector_picks(coflow_backend: Any, timeline: Timeline) -> None:
    def main() -> FlowGenerator:
        as_book = yield branch(lambda s: s["kind"], CASES)
        timeline.log(("book case gave", as_book))
        yield set_state(lambda s: {**s, "kind": "film"})
        as_film = yield branch(lambda s: s["kind"], CASES)
        timeline.log(("film case gave", as_film))

    runner = coflow.start(main, initial_state={"kind": "book"}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"kind": "film", "shelf": "films"}
    timeline.assert_matches(
        [
            (0.0, ("book case gave", {"kind": "book", "shelf": "books"})),
            (0.1, ("film case gave", "shelved a film")),
        ]
    )


def test_branch_runs_the_default_when_no_case_matches(coflow_backend: Any) -> None:
    seen: list[Any] = []

    def main() -> FlowGenerator:
        result = yield branch(
            lambda s: s["kind"], CASES, default=set_state(lambda s: {**s, "shelf": "misc"})
        )
        seen.append(result)

    runner = coflow.start(main, initial_state={"kind": "comic"}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"kind": "comic", "shelf": "misc"}
    assert seen == [{"kind": "comic", "shelf": "misc"}]


def test_branch_without_a_match_or_default_raises_at_the_yield(coflow_backend: Any) -> None:
    # SPEC is silent on the error's type: it must be raised at the yield and name the value.
    caught: list[BaseException] = []

    def main() -> FlowGenerator:
        try:
            yield branch(lambda s: s["kind"], CASES)
        except Exception as error:
            caught.append(error)

    runner = coflow.start(main, initial_state={"kind": "comic-strip"}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"kind": "comic-strip"}
    assert len(caught) == 1
    assert "comic-strip" in str(caught[0])


def test_embed_runs_a_flow_on_part_of_the_state(
    coflow_backend: Any, timeline: Timeline, after: After
) -> None:
    events: list[Any] = []

    def visit() -> FlowGenerator:
        user = yield get_state()
        timeline.log(("sees", user))
        yield set_state(lambda u: {**u, "visits": u["visits"] + 1})
        yield wait(0.1)
        user = yield get_state()
        timeline.log(("sees", user))
        yield set_state(lambda u: {**u, "visits": u["visits"] + 1})
        return "visited"

    def main() -> FlowGenerator:
        result = yield embed(
            visit, get=lambda s: s["user"], put=lambda s, user: {**s, "user": user}
        )
        timeline.log(("embed gave", result))

    initial = {"user": {"name": "al", "visits": 0}, "other": 0}
    runner = coflow.start(main, initial_state=initial, notify=events.append, backend=coflow_backend)
    after(
        0.05,
        lambda: runner.signal(lambda s: {"user": {**s["user"], "name": "bo"}, "other": 1}),
    )

    assert runner.result(timeout=5) == {"user": {"name": "bo", "visits": 2}, "other": 1}
    timeline.assert_matches(
        [
            (0.0, ("sees", {"name": "al", "visits": 0})),
            (0.1, ("sees", {"name": "bo", "visits": 1})),
            (0.1, ("embed gave", "visited")),
        ]
    )
    states = [event.state for event in events if isinstance(event, coflow.FlowState)]
    assert states[-3:] == [
        {"user": {"name": "al", "visits": 1}, "other": 0},
        {"user": {"name": "bo", "visits": 1}, "other": 1},
        {"user": {"name": "bo", "visits": 2}, "other": 1},
    ], "each update of the embedded flow becomes put(state, update) at once"


def test_timeout_gives_the_result_the_default_or_flow_timeout(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def main() -> FlowGenerator:
        fast = yield timeout(sequence(wait(0.1), set_state(lambda n: n + 1)), 0.3)
        timeline.log(("fast", fast))
        slow = yield timeout(wait(0.3), 0.1, default="late")
        timeline.log(("slow with default", slow))
        none_default = yield timeout(wait(0.3), 0.1, default=None)
        timeline.log(("slow with None default", none_default))
        try:
            yield timeout(wait(0.3), 0.1)
        except coflow.FlowTimeout:
            timeline.log("slow without default: FlowTimeout")

    runner = coflow.start(main, initial_state=0, backend=coflow_backend)

    assert runner.result(timeout=5) == 1
    timeline.assert_matches(
        [
            (0.1, ("fast", 1)),
            (0.2, ("slow with default", "late")),
            (0.3, ("slow with None default", None)),
            (0.4, "slow without default: FlowTimeout"),
        ]
    )


def test_an_uncaught_timeout_fails_the_flow(coflow_backend: Any) -> None:
    def main() -> FlowGenerator:
        yield timeout(wait(0.3), 0.05)

    runner = coflow.start(main, initial_state=None, backend=coflow_backend)

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, coflow.FlowTimeout)


def test_the_timed_out_step_is_cleaned_up_before_timeout_returns(
    coflow_backend: Any, timeline: Timeline
) -> None:
    def slow_import() -> FlowGenerator:
        try:
            yield wait(0.5)
            timeline.log("import finished")
        finally:
            timeline.log("cleanup starts")
            yield wait(0.05)
            yield set_state(lambda s: {**s, "released": True})
            timeline.log("cleanup ends")

    def main() -> FlowGenerator:
        result = yield timeout(parallel([slow_import]), 0.1, default="gave up")
        state = yield get_state()
        timeline.log(("timeout gave", result, state))

    runner = coflow.start(main, initial_state={"released": False}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"released": True}
    timeline.assert_matches(
        [
            (0.1, "cleanup starts"),
            (0.15, "cleanup ends"),
            (0.15, ("timeout gave", "gave up", {"released": True})),
        ]
    )
