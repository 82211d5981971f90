"""run returning Update(f): the state becomes f(state), as the state is when the work ends.

Unlike ``Ok``, which replaces the state with a value built from the state the
attempt started with, ``Update`` is applied on the scheduler as a signal is,
so a change that arrived while the work ran is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import REAL_BACKENDS, Gate, backend_params

import coflow
from coflow import (
    FlowGenerator,
    Ok,
    RetriesExhausted,
    Update,
    get_state,
    parallel,
    run,
    set_state,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend
from coflow.pytest_plugin import open_backend

#: ``run`` options that take each way through result interpretation: one bare attempt,
#: the retry loop, and an attempt with a timeout.
RUN_SHAPES = [
    pytest.param({}, id="one-attempt"),
    pytest.param({"retries": 2}, id="retries"),
    pytest.param({"timeout": 30.0}, id="timeout"),
]


def run_once(backend: Any, step: Any, initial_state: Any = None) -> tuple[Any, list[Any]]:
    """Run a flow that yields ``step`` once; return the final state and what the yield gave."""
    results: list[Any] = []

    def body() -> FlowGenerator:
        results.append((yield step))

    runner = coflow.start(body, initial_state=initial_state, backend=backend)
    return runner.result(timeout=5), results


class Started:
    """The runner a test starts, for its own work to find: which may run before start() returns.

    On asyncio and threads the work runs in another thread as soon as the flow
    reaches it, which can be before the test's thread has the runner in hand.
    """

    def __init__(self) -> None:
        self._given = threading.Event()
        self._runner: coflow.Runner | None = None

    def append(self, runner: coflow.Runner) -> None:
        self._runner = runner
        self._given.set()

    def __getitem__(self, index: int) -> coflow.Runner:
        assert index == 0 and self._given.wait(timeout=5)
        assert self._runner is not None
        return self._runner


def signal_from_work(
    backend: Any, runner: Started | list[coflow.Runner], fn: Callable[[Any], Any]
) -> None:
    """Signal the flow from inside its own work, the edit applied before the work returns.

    On a real backend the work waits for the signal's future, so the edit is
    applied while the work still runs.  On the virtual clock work runs inline
    and a signal takes effect after it returns, still before its result is read.
    """
    future = runner[0].signal(fn)
    if not isinstance(backend, VirtualBackend):
        future.result(timeout=5)


def test_update_is_exported() -> None:
    assert "Update" in coflow.__all__
    assert coflow.Update is Update
    assert Update.__module__ == "coflow"


def test_update_is_a_comparable_immutable_value() -> None:
    def fn(state: Any) -> Any:
        return state

    assert Update(fn) == Update(fn)
    assert Update(fn) != Ok(fn)
    assert "Update" in repr(Update(fn))
    with pytest.raises(AttributeError):
        Update(fn).fn = print  # type: ignore[misc]


@pytest.mark.parametrize("options", RUN_SHAPES)
def test_update_applies_fn_to_the_state_and_yield_gives_the_new_state(
    coflow_backend: Any, options: dict[str, Any]
) -> None:
    step = run(lambda state: Update(lambda s: {**s, "count": s["count"] + 1}), **options)

    assert run_once(coflow_backend, step, initial_state={"count": 1}) == (
        {"count": 2},
        [{"count": 2}],
    )


@pytest.mark.parametrize("options", RUN_SHAPES)
def test_update_keeps_a_signal_applied_while_the_work_ran(
    coflow_backend: Any, options: dict[str, Any]
) -> None:
    runner = Started()
    seen: list[Any] = []

    def push(state: dict[str, int]) -> Any:
        seen.append(state)
        signal_from_work(coflow_backend, runner, lambda s: {**s, "edits": s["edits"] + 1})
        return Update(lambda s: {**s, "pushes": s["pushes"] + 1})

    runner.append(
        coflow.start(
            run(push, **options), initial_state={"edits": 0, "pushes": 0}, backend=coflow_backend
        )
    )

    assert runner[0].result(timeout=5) == {"edits": 1, "pushes": 1}
    assert seen == [{"edits": 0, "pushes": 0}]


def test_ok_replaces_a_signal_applied_while_the_work_ran(coflow_backend: Any) -> None:
    """The contrast: ``Ok`` is built from the state the attempt started with."""
    runner = Started()

    def push(state: dict[str, int]) -> Any:
        signal_from_work(coflow_backend, runner, lambda s: {**s, "edits": s["edits"] + 1})
        return Ok({**state, "pushes": state["pushes"] + 1})

    runner.append(
        coflow.start(run(push), initial_state={"edits": 0, "pushes": 0}, backend=coflow_backend)
    )

    assert runner[0].result(timeout=5) == {"edits": 0, "pushes": 1}


@pytest.mark.parametrize("options", RUN_SHAPES)
def test_notify_sees_the_updated_state(coflow_backend: Any, options: dict[str, Any]) -> None:
    events: list[Any] = []
    step = run(lambda state: Update(lambda s: s + 1), **options)

    runner = coflow.start(step, initial_state=1, notify=events.append, backend=coflow_backend)

    assert runner.result(timeout=5) == 2
    assert [(type(event).__name__, event.state) for event in events] == [
        ("FlowState", 2),
        ("FlowDone", 2),
    ]


def test_an_update_that_changes_nothing_notifies_nothing(coflow_backend: Any) -> None:
    events: list[Any] = []

    runner = coflow.start(
        run(lambda state: Update(lambda s: s)),
        initial_state=1,
        notify=events.append,
        backend=coflow_backend,
    )

    assert runner.result(timeout=5) == 1
    assert [type(event).__name__ for event in events] == ["FlowDone"]


@pytest.mark.parametrize("options", RUN_SHAPES)
def test_wait_until_in_a_parallel_branch_rechecks_after_an_update(
    coflow_backend: Any, options: dict[str, Any]
) -> None:
    def waiter() -> FlowGenerator:
        state = yield wait_until(lambda s: s["pushed"])
        return ("woken", state["pushed"])

    def pusher() -> FlowGenerator:
        return (yield run(lambda state: Update(lambda s: {**s, "pushed": True}), **options))

    results: list[Any] = []

    def body() -> FlowGenerator:
        results.append((yield parallel([waiter, pusher])))

    runner = coflow.start(body, initial_state={"pushed": False}, backend=coflow_backend)

    assert runner.result(timeout=5) == {"pushed": True}
    assert results == [[("woken", True), {"pushed": True}]]


# --- fn raising: an error of the attempt --------------------------------------------------------


class FailingUpdates:
    """Work that succeeds, returning an Update whose function fails until ``succeed_on``."""

    def __init__(self, succeed_on: int | None = None) -> None:
        self.succeed_on = succeed_on
        self.attempts = 0
        self.errors: list[BaseException] = []

    def __call__(self, state: Any) -> Any:
        self.attempts += 1
        attempt = self.attempts

        def update(s: Any) -> Any:
            if attempt == self.succeed_on:
                return s + attempt
            error = ConnectionError(f"update {attempt} failed")
            self.errors.append(error)
            raise error

        return Update(update)


def test_an_update_that_raises_is_retried_like_an_error_of_the_work(coflow_backend: Any) -> None:
    work = FailingUpdates(succeed_on=3)

    assert run_once(coflow_backend, run(work, retries=2), initial_state=100) == (103, [103])
    assert work.attempts == 3


def test_an_update_raising_on_every_attempt_exhausts_the_retries(coflow_backend: Any) -> None:
    work = FailingUpdates()
    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        try:
            yield run(work, retries=2)
        except RetriesExhausted as error:
            caught.append(error)
        return (yield get_state())

    assert coflow.start(body, initial_state=1, backend=coflow_backend).result(timeout=5) == 1
    assert work.attempts == 3
    [error] = caught
    assert error.attempts == 3
    assert error.last_error is work.errors[-1]
    assert error.__cause__ is work.errors[-1]


@pytest.mark.parametrize("options", [{}, {"timeout": 30.0}], ids=["one-attempt", "timeout"])
def test_with_no_retries_an_update_that_raises_raises_its_error_at_the_yield(
    coflow_backend: Any, options: dict[str, Any]
) -> None:
    work = FailingUpdates()
    caught: list[BaseException] = []

    def body() -> FlowGenerator:
        try:
            yield run(work, **options)
        except ConnectionError as error:
            caught.append(error)
        return (yield get_state())

    assert coflow.start(body, initial_state=1, backend=coflow_backend).result(timeout=5) == 1
    assert caught == work.errors


def test_an_update_error_outside_retry_on_is_not_retried(coflow_backend: Any) -> None:
    work = FailingUpdates()
    runner = coflow.start(
        run(work, retries=3, retry_on=(KeyError,)), initial_state=1, backend=coflow_backend
    )

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert failed.value.__cause__ is work.errors[0]
    assert work.attempts == 1


def test_an_update_raising_a_base_exception_fails_only_the_flow(coflow_backend: Any) -> None:
    def push(state: Any) -> Any:
        def update(s: Any) -> Any:
            raise KeyboardInterrupt

        return Update(update)

    runner = coflow.start(run(push), initial_state=1, backend=coflow_backend)

    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, KeyboardInterrupt)
    still_serving = coflow.start(
        run(lambda s: Update(lambda s: s + 1)), initial_state=1, backend=coflow_backend
    )
    assert still_serving.result(timeout=5) == 2


# --- the flagship pattern: an edit made during the push is pushed afterwards --------------------


def sync_book(push: Callable[[Any], Any]) -> Callable[[], FlowGenerator]:
    """sync_book, ending once a push leaves the book clean (so that a test can finish)."""

    def flow() -> FlowGenerator:
        while True:
            yield wait_until(lambda s: s["dirty"])
            yield set_state(lambda s: {**s, "dirty": "processing"})
            yield run(push, retries=2)
            if (yield get_state())["dirty"] is False:
                return

    return flow


def mark_pushed(state: Any) -> Any:
    return {**state, "dirty": False} if state["dirty"] == "processing" else state


def edit(title: str) -> Callable[[Any], Any]:
    return lambda s: {**s, "title": title, "dirty": True}


BOOK = {"dirty": True, "title": "Draft"}


def test_an_edit_during_the_push_is_pushed_afterwards(coflow_backend: Any) -> None:
    runner = Started()
    pushed: list[str] = []

    def push(state: Any) -> Any:
        pushed.append(state["title"])
        if len(pushed) == 1:
            signal_from_work(coflow_backend, runner, edit("Final"))
        return Update(mark_pushed)

    runner.append(coflow.start(sync_book(push), initial_state=BOOK, backend=coflow_backend))

    assert runner[0].result(timeout=5) == {"dirty": False, "title": "Final"}
    assert pushed == ["Draft", "Final"]


def test_with_ok_an_edit_during_the_push_is_lost(coflow_backend: Any) -> None:
    """Why the pattern uses Update: Ok's state was built before the edit arrived."""
    runner = Started()
    pushed: list[str] = []

    def push(state: Any) -> Any:
        pushed.append(state["title"])
        if len(pushed) == 1:
            signal_from_work(coflow_backend, runner, edit("Final"))
        return Ok({**state, "dirty": False})

    runner.append(coflow.start(sync_book(push), initial_state=BOOK, backend=coflow_backend))

    assert runner[0].result(timeout=5) == {"dirty": False, "title": "Draft"}
    assert pushed == ["Draft"]


def test_an_edit_during_a_failed_attempt_is_pushed_by_the_retry(coflow_backend: Any) -> None:
    """A retry's work receives the state as it is when that attempt starts."""
    runner = Started()
    pushed: list[str] = []

    def push(state: Any) -> Any:
        pushed.append(state["title"])
        if len(pushed) == 1:
            signal_from_work(coflow_backend, runner, edit("Final"))
            raise ConnectionError("offline")
        return Update(mark_pushed)

    runner.append(coflow.start(sync_book(push), initial_state=BOOK, backend=coflow_backend))

    # The retry pushed "Final", but the edit came after "processing" was set:
    # the book stays dirty, so the loop pushes once more.
    assert runner[0].result(timeout=5) == {"dirty": False, "title": "Final"}
    assert pushed == ["Draft", "Final", "Final"]


@pytest.mark.parametrize("name", backend_params(REAL_BACKENDS))
def test_an_edit_signalled_from_outside_during_the_push_is_pushed_afterwards(name: str) -> None:
    with open_backend(name) as backend:
        started, release = Gate(backend), Gate(backend)
        pushed: list[str] = []

        def push(state: Any) -> Any:
            pushed.append(state["title"])
            if len(pushed) == 1:
                started.open()
                release.wait()  # until the test's edit has been applied
            return Update(mark_pushed)

        runner = coflow.start(sync_book(push), initial_state=BOOK, backend=backend)
        started.wait()
        assert runner.signal(edit("Final")).result(timeout=5) == {"dirty": True, "title": "Final"}
        release.open()

        assert runner.result(timeout=5) == {"dirty": False, "title": "Final"}
        assert pushed == ["Draft", "Final"]


def test_the_sync_book_example_pushes_again_after_an_edit_made_during_its_push(
    coflow_backend: Any, tolerance: float
) -> None:
    from examples import sync_book as example
    from examples._recording import record_events

    class EditedDuringThePush(example.FlakyBookAPI):
        book: coflow.Runner

        def sync_book(self, book_id: str) -> None:
            super().sync_book(book_id)
            if len(self.calls) == 1:
                signal_from_work(coflow_backend, [self.book], example.mark_dirty)

    api = EditedDuringThePush(failures=0)

    def start(backend: Any, notify: Any) -> list[coflow.Runner]:
        def on_the_scheduler(_: Any) -> list[coflow.Runner]:  # before the book takes a step
            # The second push ends at 1.3 s: stop 0.15 s after it, a margin for real backends.
            runners = example.start(backend, notify, api, stop_after=1.45)
            api.book = runners[0]
            return runners

        runners: list[coflow.Runner] = coflow.start(
            set_state(on_the_scheduler), backend=backend
        ).result(timeout=5)
        return runners

    records = record_events(start, coflow_backend)

    states = [(t, e.state) for t, name, e in records if name == "sync_book"]
    assert [(s["edits"], s["dirty"], s["synced"]) for _, s in states] == [
        (1, True, 0),
        (2, True, 0),
        (3, True, 0),
        (4, True, 0),
        (4, "processing", 0),  # the first push starts
        (5, True, 0),  # an edit while it runs
        (5, True, 1),  # the push ends: counted, and the book stays dirty
        (5, "processing", 1),  # 0.5 s later, the second push
        (5, False, 2),
    ]
    times = [t for t, _ in states]
    assert times == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.8, 0.8, 0.8, 1.3, 1.3], abs=tolerance or 1e-9
    )
    assert api.calls == [("b-1", True), ("b-1", True)]
