"""Faults (SPEC §9): whatever user code raises, a flow ends with a reported outcome.

Every test here runs on all four backends unless it is about one backend's
own machinery.  After each fault the test also checks that the backend still
serves another flow: a fault must never take the scheduler down with it.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import needs_gevent

import coflow
from coflow import FlowGenerator, Ok, race, run, set_state, wait, wait_until
from coflow.pytest_plugin import open_backend

#: The ``BaseException``s user code raises that are not ``Exception``s.
BASE_EXCEPTIONS = [SystemExit, KeyboardInterrupt, GeneratorExit]


def assert_still_serving(backend: Any) -> None:
    """Another flow, with a timer and a state change, still runs to its end."""

    def probe() -> FlowGenerator:
        yield wait(0.01)
        yield set_state(lambda s: s + 1)

    assert coflow.start(probe, initial_state=0, backend=backend).result(timeout=5) == 1


def failure_of(runner: coflow.Runner) -> BaseException:
    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result(timeout=5)
    assert runner.status == "failed"
    assert failed.value.__cause__ is not None
    return failed.value.__cause__


# -- 1. a BaseException from a flow, a signal function or a notify callable -----


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_a_flow_raising_a_base_exception_fails_with_it(coflow_backend: Any, kind: type) -> None:
    def main() -> FlowGenerator:
        yield wait(0.01)
        raise kind()

    assert type(failure_of(coflow.start(main, backend=coflow_backend))) is kind
    assert_still_serving(coflow_backend)


def test_sys_exit_in_a_flow_fails_it(coflow_backend: Any) -> None:
    def main() -> FlowGenerator:
        yield wait(0.01)
        sys.exit(1)

    error = failure_of(coflow.start(main, backend=coflow_backend))
    assert isinstance(error, SystemExit) and error.code == 1
    assert_still_serving(coflow_backend)


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_a_predicate_raising_a_base_exception_fails_the_flow(
    coflow_backend: Any, kind: type
) -> None:
    def predicate(state: Any) -> bool:
        if state:
            raise kind()
        return False

    runner = coflow.start(wait_until(predicate), initial_state=False, backend=coflow_backend)
    runner.signal(lambda s: True)
    assert type(failure_of(runner)) is kind
    assert_still_serving(coflow_backend)


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_a_signal_function_raising_a_base_exception_leaves_the_flow_running(
    coflow_backend: Any, kind: type
) -> None:
    def boom(state: Any) -> Any:
        raise kind()

    runner = coflow.start(
        wait_until(lambda s: s == "go"), initial_state="idle", backend=coflow_backend
    )
    failed = runner.signal(boom)
    runner.signal(lambda s: "go")
    assert runner.result(timeout=5) == "go"
    assert type(failed.exception(timeout=5)) is kind


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_a_notify_callable_raising_a_base_exception_is_logged_and_the_flow_goes_on(
    coflow_backend: Any, kind: type, caplog: pytest.LogCaptureFixture
) -> None:
    def notify(event: Any) -> None:
        raise kind()

    def main() -> FlowGenerator:
        yield set_state(lambda s: s + 1)
        yield wait(0.01)
        yield set_state(lambda s: s + 1)

    with caplog.at_level(logging.ERROR, logger="coflow"):
        assert (
            coflow.start(main, initial_state=0, notify=notify, backend=coflow_backend).result(5)
            == 2
        )
    assert any("notify" in record.getMessage() for record in caplog.records)
    assert_still_serving(coflow_backend)


# -- 2. delays longer than the backend's clock can arm -------------------------


@pytest.mark.parametrize(
    "step",
    [wait(1e10), wait_until(lambda s: False, timeout=1e10), coflow.debounce(1e10)],
    ids=["wait", "wait_until", "debounce"],
)
def test_a_delay_beyond_timeout_max_waits_and_the_backend_goes_on(
    coflow_backend: Any, step: Any
) -> None:
    assert 1e10 > threading.TIMEOUT_MAX
    runner = coflow.start(step, initial_state=0, backend=coflow_backend)
    assert_still_serving(coflow_backend)
    assert runner.status == "running"
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)


# -- 3. work ending with a BaseException coflow did not ask for ---------------


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_work_raising_a_base_exception_fails_its_attempt_unretried(
    coflow_backend: Any, kind: type
) -> None:
    attempts: list[int] = []

    def push(state: Any) -> Any:
        attempts.append(1)
        raise kind()

    runner = coflow.start(run(push, retries=3), backend=coflow_backend)
    assert type(failure_of(runner)) is kind
    assert attempts == [1], "a BaseException is not retried unless retry_on names it"
    assert_still_serving(coflow_backend)


def test_work_raising_a_base_exception_named_by_retry_on_is_retried(coflow_backend: Any) -> None:
    attempts: list[int] = []

    def push(state: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise KeyboardInterrupt
        return Ok("pushed")

    runner = coflow.start(
        run(push, retries=3, retry_on=(KeyboardInterrupt,)), backend=coflow_backend
    )
    assert runner.result(timeout=5) == "pushed"
    assert len(attempts) == 3


def test_asyncio_work_whose_task_someone_else_cancels_fails_the_flow() -> None:
    import asyncio

    with open_backend("asyncio") as backend:
        started = threading.Event()
        tasks: list[asyncio.Task[Any]] = []

        async def push(state: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            started.set()
            await asyncio.Event().wait()

        runner = coflow.start(run(push), backend=backend)
        assert started.wait(5)
        backend.loop.call_soon_threadsafe(tasks[0].cancel)
        assert isinstance(failure_of(runner), asyncio.CancelledError)
        assert_still_serving(backend)


def test_asyncio_work_whose_task_someone_else_cancels_before_it_ran_fails_the_flow() -> None:
    import asyncio

    with open_backend("asyncio") as backend:
        loop = backend.loop
        ran: list[Any] = []

        async def push(state: Any) -> Any:
            ran.append(state)

        def cancel_every_task() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        def main() -> FlowGenerator:
            # queued before the work's task first runs, in the same loop iteration
            yield set_state(lambda state: loop.call_soon(cancel_every_task) and state)
            yield run(push)

        runner = coflow.start(main, initial_state="draft", backend=backend)
        assert isinstance(failure_of(runner), asyncio.CancelledError)
        assert ran == []
        assert_still_serving(backend)


def test_asyncio_work_awaiting_a_future_its_owner_cancelled_fails_the_flow() -> None:
    import asyncio

    with open_backend("asyncio") as backend:
        started = threading.Event()
        futures: list[asyncio.Future[Any]] = []

        async def push(state: Any) -> Any:
            future = asyncio.get_running_loop().create_future()
            futures.append(future)
            started.set()
            return await future

        runner = coflow.start(run(push), backend=backend)
        assert started.wait(5)
        backend.loop.call_soon_threadsafe(futures[0].cancel)
        assert isinstance(failure_of(runner), asyncio.CancelledError)
        stopped = coflow.start(run(push), backend=backend)
        stopped.stop()
        with pytest.raises(coflow.FlowStopped):
            stopped.result(timeout=5)


@needs_gevent
def test_gevent_work_whose_greenlet_someone_else_kills_fails_the_flow() -> None:
    import gevent
    import gevent.event

    with open_backend("gevent") as backend:
        greenlets: list[Any] = []
        started = gevent.event.Event()

        def push(state: Any) -> Any:
            greenlets.append(gevent.getcurrent())
            started.set()
            gevent.event.Event().wait()

        runner = coflow.start(run(push), backend=backend)
        started.wait(5)
        gevent.spawn(greenlets[0].kill)
        assert isinstance(failure_of(runner), gevent.GreenletExit)
        assert_still_serving(backend)


# -- 5. the virtual clock's ready queue while work runs inline ------------------


@pytest.mark.parametrize("action", ["stop", "signal", "send", "start"])
def test_anything_a_run_function_does_inline_takes_effect_after_it_returns(
    coflow_backend: Any, action: str
) -> None:
    other = coflow.start(
        coflow.receive(), initial_state="other", backend=coflow_backend, supervisor=None
    )
    started: list[coflow.Runner] = []

    def work(state: Any) -> Any:
        if action == "stop":
            other.stop()
        elif action == "signal":
            other.signal(lambda s: "signalled")
        elif action == "send":
            other.send("hello")
        else:
            started.append(coflow.start(set_state(lambda s: "child"), backend=coflow_backend))
        return Ok("worked")

    assert coflow.start(run(work), backend=coflow_backend).result(timeout=5) == "worked"
    if action == "stop":
        with pytest.raises(coflow.FlowStopped):
            other.result(timeout=5)
    elif action == "signal":
        other.send("go")
        assert other.result(timeout=5) == "signalled"
    elif action == "send":
        assert other.result(timeout=5) == "other"
    else:
        other.stop()
        assert started[0].result(timeout=5) == "child"
    assert_still_serving(coflow_backend)


# -- 8. a cancelled run never commits its result -------------------------------


def test_a_run_that_loses_a_race_does_not_commit_its_ok(coflow_backend: Any) -> None:
    runner = coflow.start(
        race([run(lambda s: Ok("a")), set_state(lambda s: "b")]),
        initial_state="",
        backend=coflow_backend,
    )
    assert runner.result(timeout=5) == "b"


# -- 4. a predicate or match whose result cannot be truth-tested -----------------


class Ambiguous:
    """Like a numpy array: asking whether it is true raises."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array with more than one element is ambiguous")


def test_a_predicate_result_that_cannot_be_truth_tested_raises_at_the_yield(
    coflow_backend: Any,
) -> None:
    def main() -> FlowGenerator:
        try:
            yield wait_until(lambda s: Ambiguous() if s == "edited" else False)
        except ValueError as error:
            message = str(error)
            yield set_state(lambda s: f"raised: {message}")

    runner = coflow.start(main, initial_state="idle", backend=coflow_backend)
    edited = runner.signal(lambda s: "edited")
    assert runner.result(timeout=5).startswith("raised: the truth value")
    assert edited.result(timeout=5) == "edited"


def test_a_receive_match_that_cannot_be_truth_tested_raises_and_keeps_the_message(
    coflow_backend: Any,
) -> None:
    def main() -> FlowGenerator:
        try:
            yield coflow.receive(lambda message: Ambiguous())
        except ValueError:
            message = yield coflow.receive()
            yield set_state(lambda s: message)

    runner = coflow.start(main, backend=coflow_backend)
    runner.send("kept")
    assert runner.result(timeout=5) == "kept"


def test_a_match_raising_on_a_queued_message_keeps_it(coflow_backend: Any) -> None:
    def main() -> FlowGenerator:
        yield wait_until(lambda s: s == "go")
        try:
            yield coflow.receive(lambda message: Ambiguous())
        except ValueError:
            message = yield coflow.receive()
            yield set_state(lambda s: message)

    runner = coflow.start(main, initial_state="idle", backend=coflow_backend)
    runner.send("kept")
    runner.signal(lambda s: "go")
    assert runner.result(timeout=5) == "kept"


# -- 12, 13. any depth, in time linear in the depth ---------------------------------

DEPTH = 10_000


def nested(wrap: Callable[[Any], Any], inner: Any) -> Any:
    step = inner
    for _ in range(DEPTH):
        step = wrap(step)
    return step


WRAPPERS = {
    "parallel": lambda step: coflow.parallel([step]),
    "race": lambda step: coflow.race([step]),
    "timeout": lambda step: coflow.timeout(step, 1e6),
    "embed": lambda step: coflow.embed(step, lambda s: s, lambda s, part: part),
}


@pytest.mark.parametrize("kind", WRAPPERS)
def test_stopping_a_deep_nesting_never_reaches_the_recursion_limit(kind: str) -> None:
    from coflow.backends.virtual import VirtualBackend

    backend = VirtualBackend()
    runner = coflow.start(nested(WRAPPERS[kind], wait(10)), backend=backend)
    backend.advance(1)
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result()


@pytest.mark.parametrize("kind", WRAPPERS)
def test_failing_through_a_deep_nesting_never_reaches_the_recursion_limit(kind: str) -> None:
    from coflow.backends.virtual import VirtualBackend

    def fail() -> FlowGenerator:
        yield wait(1)
        raise RuntimeError("deep")

    sibling = coflow.sequence(wait(10))
    runner = coflow.start(
        coflow.parallel([nested(WRAPPERS[kind], fail), sibling]), backend=VirtualBackend()
    )
    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result()
    assert str(failed.value.__cause__) == "deep"


def test_a_timeout_around_a_deep_nesting_cancels_it() -> None:
    from coflow.backends.virtual import VirtualBackend

    runner = coflow.start(
        coflow.timeout(nested(WRAPPERS["parallel"], wait(10)), 1, default="late"),
        backend=VirtualBackend(),
    )
    assert runner.result() is None  # a default is the step's result, not the state


def test_a_failure_through_deeply_nested_calls_reaches_the_top() -> None:
    from coflow.backends.virtual import VirtualBackend

    def level(depth: int) -> FlowGenerator:
        if depth == 0:
            yield wait(1)
            raise RuntimeError("bottom")
        yield coflow.call(level(depth - 1))

    runner = coflow.start(level(DEPTH), backend=VirtualBackend())
    with pytest.raises(coflow.FlowFailed) as failed:
        runner.result()
    assert isinstance(failed.value.__cause__, coflow.ChildFailed)


# -- 6. Cancelled is delivered once per stop; stop(grace=) ends what carries on ----


def stubborn(log: list[str]) -> Callable[[], FlowGenerator]:
    """A flow that catches ``Cancelled`` and carries on, forever."""

    def main() -> FlowGenerator:
        while True:
            try:
                yield wait(0.02)
            except coflow.Cancelled:
                log.append("caught")

    return main


def test_a_flow_that_catches_cancelled_and_carries_on_keeps_running(coflow_backend: Any) -> None:
    log: list[str] = []
    runner = coflow.start(stubborn(log), backend=coflow_backend)
    runner.stop()
    with pytest.raises(coflow.FlowTimeout):
        runner.result(timeout=0.2)
    assert runner.status == "running" and log == ["caught"], "delivered once, edge-triggered"
    runner.stop(grace=0)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)


def test_stop_with_a_grace_cancels_cleanup_still_running_after_it(coflow_backend: Any) -> None:
    log: list[str] = []

    def main() -> FlowGenerator:
        try:
            yield wait(10)
        finally:
            log.append("cleanup")
            try:
                yield wait(10)
                log.append("cleanup finished")
            finally:
                log.append("cleanup cancelled")

    runner = coflow.start(main, backend=coflow_backend)
    started = coflow_backend.now()
    coflow.start(set_state(lambda s: None), backend=coflow_backend).result(timeout=5)
    runner.stop(grace=0.05)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert log == ["cleanup", "cleanup cancelled"]
    assert coflow_backend.now() - started < 5


def test_stop_with_a_grace_lets_cleanup_that_finishes_in_time_finish(coflow_backend: Any) -> None:
    log: list[str] = []

    def main() -> FlowGenerator:
        try:
            yield wait(10)
        finally:
            yield wait(0.01)
            log.append("cleanup finished")

    runner = coflow.start(main, backend=coflow_backend)
    runner.stop(grace=1)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert log == ["cleanup finished"]


def test_stop_with_a_grace_reaches_branches_and_children(coflow_backend: Any) -> None:
    log: list[str] = []

    def child() -> FlowGenerator:
        yield from stubborn(log)()

    def main() -> FlowGenerator:
        yield coflow.parallel([stubborn(log), coflow.call(child)])

    runner = coflow.start(main, backend=coflow_backend)
    coflow.start(set_state(lambda s: None), backend=coflow_backend).result(timeout=5)
    runner.stop(grace=0.05)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert log.count("caught") >= 2


def test_a_bad_grace_is_a_value_error(coflow_backend: Any) -> None:
    runner = coflow.start(wait(10), backend=coflow_backend)
    with pytest.raises(ValueError, match="grace"):
        runner.stop(grace=-1)
    runner.stop()


# -- 15. stop() overtakes what is queued ------------------------------------------


def test_stop_takes_effect_before_the_signals_queued_ahead_of_it(coflow_backend: Any) -> None:
    # The virtual clock and the gevent hub run in this thread; the others in their own.
    real = not coflow_backend.driven_by_its_caller and coflow_backend.name != "gevent"
    holding, gate = threading.Event(), threading.Event()
    applied: list[int] = []

    def hold(state: Any) -> Any:
        if real:  # hold the scheduler while the rest queue up behind it
            holding.set()
            gate.wait(5)
        return state

    runner = coflow.start(wait_until(lambda s: False), initial_state=0, backend=coflow_backend)
    first = runner.signal(hold)
    assert not real or holding.wait(5)
    queued = [runner.signal(lambda s, n=n: applied.append(n) or s) for n in range(200)]
    runner.stop()
    gate.set()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    if real:
        assert first.result(timeout=5) == 0
    for future in queued:
        with pytest.raises(coflow.FlowNotRunning):
            future.result(timeout=5)
    assert applied == []


# -- 7. a failure nobody watches is logged -----------------------------------------


def fails() -> FlowGenerator:
    yield wait(0.01)
    raise RuntimeError("nobody watches")


def failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "watched" in r.getMessage()]


def test_a_started_runner_nobody_watches_logs_its_failure(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="coflow"):
        runner = coflow.start(fails, backend=coflow_backend, name="unwatched")
        coflow.start(wait(0.2), backend=coflow_backend).result(timeout=5)
        assert runner.status == "failed"
        assert failure_logs(caplog) == [], "logged once nobody can ask any more"
        del runner
        gc.collect()
    (record,) = failure_logs(caplog)
    assert "'unwatched' failed" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "nobody watches"


def test_a_failed_spawned_child_nobody_watches_logs_its_failure(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def parent() -> FlowGenerator:
        yield coflow.spawn(fails)
        yield wait(0.2)

    with caplog.at_level(logging.ERROR, logger="coflow"):
        assert (
            coflow.start(parent, initial_state="ok", backend=coflow_backend).result(timeout=5)
            == "ok"
        )
    (record,) = failure_logs(caplog)
    assert "parent > fails" in record.getMessage()


def test_a_failure_someone_is_told_of_is_not_logged(
    coflow_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []

    def parent() -> FlowGenerator:
        try:
            yield coflow.call(fails)
        except coflow.ChildFailed:
            pass

    with caplog.at_level(logging.ERROR, logger="coflow"):
        watched = coflow.start(fails, backend=coflow_backend)
        with pytest.raises(coflow.FlowFailed):
            watched.result(timeout=5)
        coflow.start(fails, notify=events.append, backend=coflow_backend)
        coflow.start(parent, backend=coflow_backend).result(timeout=5)
        coflow.start(wait(0.1), backend=coflow_backend).result(timeout=5)
    assert failure_logs(caplog) == []
    assert isinstance(events[-1], coflow.FlowError)


def test_past_the_grace_every_flow_on_the_stack_is_cancelled_unprotected(
    coflow_backend: Any,
) -> None:
    log: list[str] = []

    def inner() -> FlowGenerator:
        yield from stubborn(log)()

    def outer() -> FlowGenerator:
        while True:
            try:
                yield inner()
            except coflow.Cancelled:
                log.append("outer caught")
                yield wait(0.02)

    runner = coflow.start(outer, backend=coflow_backend)
    coflow.start(set_state(lambda s: None), backend=coflow_backend).result(timeout=5)
    runner.stop(grace=0.05)
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert log[0] == "caught" and log[-1] == "outer caught"
