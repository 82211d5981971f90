"""``coflow.testing.explore``: a scenario under many drawn schedules, the failing one replayed.

The acceptance: on the flagship book-sync flow written with the old
``Ok({**state, ...})`` push, exploration finds the lost edit within 200 runs;
with ``Update`` it finds nothing in 2,000; the reported seed replays the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from book_sync import push_with_ok, push_with_update, sync_book

import coflow
from coflow import Ok, Update, parallel, run
from coflow.testing import ScheduleFailed, explore


def _every_edit_is_pushed(push: Callable[[Any], Any]) -> Callable[[Any], None]:
    def every_edit_is_pushed(backend: Any) -> None:
        runner = coflow.start(sync_book(push), backend=backend)
        runner.signal(lambda s: {**s, "dirty": True, "text": "first"})
        backend.advance(0.65)  # 0.15 s into the push, if it is still running
        runner.signal(lambda s: {**s, "dirty": True, "text": "second"})
        backend.advance(30)
        assert runner.get_state()["pushed"][-1:] == ["second"], runner.get_state()
        runner.stop()

    return every_edit_is_pushed


def test_exploration_finds_the_edit_the_old_ok_push_loses_and_its_seed_replays_it() -> None:
    scenario = _every_edit_is_pushed(push_with_ok)
    with pytest.raises(ScheduleFailed) as failed:
        explore(scenario, runs=200, seed=1)
    found = failed.value
    assert isinstance(found.__cause__, AssertionError)
    assert 1 <= found.seed < 201
    message = str(found)
    assert f"(seed {found.seed})" in message
    assert f"seed={found.seed}, runs=1" in message
    assert "push_with_ok lasts" in message
    with pytest.raises(ScheduleFailed) as replayed:
        explore(scenario, seed=found.seed, runs=1)
    assert replayed.value.schedule == found.schedule
    assert str(replayed.value.__cause__) == str(found.__cause__)


def test_exploration_finds_nothing_in_two_thousand_runs_with_update() -> None:
    assert explore(_every_edit_is_pushed(push_with_update), runs=2000, seed=1) == 2000


def test_concurrent_work_completes_in_drawn_orders() -> None:
    orders = set()

    def record(label: str) -> Callable[[list[str]], Update[list[str]]]:
        return lambda state: Update(lambda now: [*now, label])

    def scenario(backend: Any) -> None:
        both = parallel([run(record("a")), run(record("b"))])
        orders.add(tuple(coflow.start(both, initial_state=[], backend=backend).result()))

    explore(scenario, runs=50)
    assert orders == {("a", "b"), ("b", "a")}


def test_async_work_is_given_a_drawn_duration_too() -> None:
    ends = []

    def scenario(backend: Any) -> None:
        async def push(state: int) -> Ok[int]:
            await asyncio.sleep(0.1)
            return Ok(state + 1)

        coflow.start(run(push), initial_state=0, backend=backend).result()
        ends.append(backend.now())

    explore(scenario, runs=20, work=(0.0, 0.5))
    assert min(ends) >= 0.1
    assert max(ends) <= 0.6
    assert len(set(ends)) > 1


def test_a_scenario_that_never_fails_reports_the_runs_it_made() -> None:
    runs = []
    assert explore(lambda backend: runs.append(backend.now()), runs=7) == 7
    assert len(runs) == 7


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"scenario": 42}, TypeError, "scenario must be a function of a backend, got 42"),
        ({"runs": 0}, ValueError, "runs must be an int >= 1, got 0"),
        ({"seed": "one"}, TypeError, "seed must be an int, got 'one'"),
        ({"work": (1.0, 0.5)}, ValueError, "work's shortest 1.0 is longer than its longest 0.5"),
        ({"work": 3}, TypeError, r"work must be a \(shortest, longest\) pair of seconds, got 3"),
        ({"work": (-1, 1)}, ValueError, "explore: work's shortest"),
    ],
)
def test_bad_arguments_name_what_is_wrong(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    call: dict[str, Any] = {"scenario": lambda backend: None, **arguments}
    with pytest.raises(error, match=message):
        explore(**call)
