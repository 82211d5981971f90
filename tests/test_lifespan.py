"""The supervisor as an application's lifespan: stop with a grace, shutdown, keyed starts.

``supervisor.stop(grace=)`` gives each runner its grace; ``shutdown()`` (and
``await ashutdown()``) stops them all and waits until their cleanup has run,
then refuses new starts; ``lifespan()`` installs the supervisor for the life of
an app (binding it to the app's asyncio loop) and shuts it down at the end;
``start(flow, key=...)`` is get-or-start, one runner per key.

Behaviour tests take ``coflow_backend`` and run on every backend.  Nothing
sleeps to let things settle: the tests wait on ``result()``, on the shutdown
itself, on thread joins and barriers.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import coflow
from coflow import (
    Cancelled,
    FlowGenerator,
    FlowStopped,
    FlowTimeout,
    Runner,
    Supervisor,
    run,
    wait,
    wait_until,
)

# Helpers


class Cleaning:
    """A flow that runs until stopped, then cleans up with steps (a wait, then a run)."""

    def __init__(self, cleanup_seconds: float = 0.01) -> None:
        self.cleaned: list[str] = []
        self.runs = 0
        cleaned = self.cleaned

        @coflow.flow(initial_state="idle", name="cleaning")
        def body() -> FlowGenerator:
            self.runs += 1
            try:
                yield wait_until(lambda s: False)
            except Cancelled:
                yield wait(cleanup_seconds)  # cleanup that takes time, and yields steps
                yield run(lambda state: cleaned.append(state))
                raise

        self.flow = body


@coflow.flow(initial_state=None, name="stubborn")
def stubborn() -> FlowGenerator:
    """Its cleanup outlasts any wait: only a grace ends it."""
    try:
        yield wait_until(lambda s: False)
    except Cancelled:
        yield wait(3600.0)
        raise


@coflow.flow(initial_state=None, name="quick")
def quick() -> FlowGenerator:
    yield coflow.set_state(lambda s: "done")


def idle() -> FlowGenerator:
    yield wait_until(lambda s: False)


def begun(runner: Runner) -> Runner:
    """``runner``, once its flow has begun: called in the thread that started it.

    Work posted from one thread keeps its order, not work posted from two: a
    stop from another thread could otherwise end the flow before it begins.  On
    the virtual clock nothing runs until it is driven, in order.
    """
    if not runner.backend.driven_by_its_caller:
        runner.signal(lambda s: s).result(timeout=5)  # applied after the start, in order
    return runner


def in_threads(backend: Any, fn: Callable[[], Any], count: int = 1) -> list[Any]:
    """``fn()`` in ``count`` plain threads at once (no ambient supervisor there); the results.

    On gevent the threads are a pool's whose results the hub waits for, so the hub
    goes on serving the flows meanwhile (a thread's join would block it).
    """
    if backend.name == "gevent":
        from gevent.threadpool import ThreadPool

        pool = ThreadPool(count)
        try:
            return [result.get(timeout=5) for result in [pool.spawn(fn) for _ in range(count)]]
        finally:
            pool.kill()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(results) == count, "a thread did not finish"
    return results


def in_thread(backend: Any, fn: Callable[[], Any]) -> Any:
    return in_threads(backend, fn)[0]


def nothing_installed() -> bool:
    probe = Supervisor()
    try:
        probe.install()
    except RuntimeError:
        return False
    probe.uninstall()
    return True


# stop(grace=)


def test_stop_with_a_grace_cancels_cleanup_again_once_the_grace_is_over(
    coflow_backend: Any,
) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    runners = [coflow.start(stubborn, supervisor=supervisor) for _ in range(2)]
    supervisor.stop(grace=0.05)
    for runner in runners:
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
    assert supervisor.children() == []


def test_stop_rejects_a_bad_grace() -> None:
    supervisor = Supervisor()
    with pytest.raises(ValueError, match="grace"):
        supervisor.stop(grace=-1)


# shutdown


def test_shutdown_waits_until_the_cleanup_of_every_flow_has_run(coflow_backend: Any) -> None:
    cleaning = Cleaning()
    supervisor = Supervisor(backend=coflow_backend)
    runners = [coflow.start(cleaning.flow, supervisor=supervisor) for _ in range(3)]
    supervisor.shutdown(grace=5.0)
    assert cleaning.cleaned == ["idle"] * 3  # the cleanup's steps ran before shutdown returned
    assert [runner.status for runner in runners] == ["stopped"] * 3
    assert supervisor.children() == []


def test_shutdown_with_a_grace_ends_cleanup_that_would_run_on(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    runner = coflow.start(stubborn, supervisor=supervisor)
    supervisor.shutdown(grace=0.05, timeout=5)
    assert runner.status == "stopped"


def test_shutdown_past_its_timeout_raises_flow_timeout_naming_how_many_run(
    coflow_backend: Any,
) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    runners = [coflow.start(stubborn, supervisor=supervisor) for _ in range(2)]
    with pytest.raises(FlowTimeout, match="2 flows still running") as raised:
        supervisor.shutdown(timeout=0.05)
    assert "stubborn" in str(raised.value)
    assert [runner.status for runner in runners] == ["running"] * 2
    supervisor.stop(grace=0)  # a grace now ends their cleanup
    supervisor.shutdown(timeout=5)  # and a second shutdown waits for that
    assert [runner.status for runner in runners] == ["stopped"] * 2


def test_a_shut_down_supervisor_refuses_new_starts_naming_itself(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    supervisor.shutdown()
    for start in (
        lambda: coflow.start(idle, supervisor=supervisor),
        lambda: supervisor.start(idle),
        lambda: supervisor.start(idle, key="book-1"),
    ):
        with pytest.raises(RuntimeError, match="shut down") as raised:
            start()
        assert repr(supervisor) in str(raised.value)
    with supervisor, pytest.raises(RuntimeError, match="shut down"):
        coflow.start(idle)
    unsupervised = coflow.start(idle, backend=coflow_backend, supervisor=None)  # others still run
    unsupervised.stop()


def test_shutdown_with_nothing_running_returns_at_once() -> None:
    supervisor = Supervisor()
    supervisor.shutdown(timeout=0)
    assert supervisor.children() == []


def test_shutdown_rejects_bad_limits() -> None:
    supervisor = Supervisor()
    with pytest.raises(ValueError, match="grace"):
        supervisor.shutdown(grace=float("nan"))
    with pytest.raises(ValueError, match="timeout"):
        supervisor.shutdown(timeout=-1)
    assert supervisor.start(quick, backend="virtual").result() == "done"  # still open


@pytest.mark.coflow_backends("asyncio")
def test_a_blocking_shutdown_on_the_event_loop_refuses_and_says_to_await(
    coflow_backend: Any,
) -> None:
    cleaning = Cleaning()
    supervisor = Supervisor(backend=coflow_backend)
    runner = coflow.start(cleaning.flow, supervisor=supervisor)

    async def on_the_loop() -> str:
        try:
            supervisor.shutdown()
        except RuntimeError as error:
            refused = str(error)
        await supervisor.ashutdown(grace=5.0)
        return refused

    future = asyncio.run_coroutine_threadsafe(on_the_loop(), coflow_backend.loop)
    refused = future.result(timeout=5)
    assert "await" in refused and "ashutdown" in refused
    assert runner.status == "stopped" and cleaning.cleaned == ["idle"]


def test_ashutdown_waits_for_cleanup_and_times_out_like_shutdown() -> None:
    cleaning = Cleaning(cleanup_seconds=0.01)

    async def main() -> None:
        supervisor = Supervisor()
        runner = coflow.start(cleaning.flow, supervisor=supervisor)
        late = coflow.start(stubborn, supervisor=supervisor)
        with pytest.raises(FlowTimeout, match="1 flow still running"):
            await supervisor.ashutdown(timeout=0.2)
        assert runner.status == "stopped" and cleaning.cleaned == ["idle"]
        supervisor.stop(grace=0)
        await supervisor.ashutdown()
        assert late.status == "stopped"

    asyncio.run(main())


# keyed start


def test_a_key_gives_the_runner_already_running_for_it(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    first = supervisor.start(idle, key="book-1")
    assert supervisor.start(idle, key="book-1") is first
    other = supervisor.start(idle, key="book-2")
    assert other is not first
    assert supervisor.get("book-1") is first and supervisor.get("book-2") is other
    assert supervisor.get("book-3") is None
    assert supervisor.children() == [first, other]
    supervisor.shutdown()


def test_a_keyed_runner_is_named_after_its_key_unless_named(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    assert supervisor.start(idle, key=("book", 7)).name == "('book', 7)"
    assert supervisor.start(idle, key="book-8", name="sync of book 8").name == "sync of book 8"
    assert supervisor.start(idle).name == "idle"  # no key: the flow's own name
    supervisor.shutdown()


def test_start_without_a_key_is_a_supervised_start(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    seen: list[Any] = []
    runner = supervisor.start(quick, initial_state="new", notify=seen.append)
    assert runner.result(timeout=5) == "done"
    assert supervisor.start(idle) is not supervisor.start(idle)
    assert seen[-1] == coflow.FlowDone("done", runner)
    supervisor.shutdown()


def test_a_key_whose_runner_ended_gets_a_new_one(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    done = supervisor.start(quick, key="book-1")
    assert done.result(timeout=5) == "done"
    assert supervisor.get("book-1") is None
    again = supervisor.start(idle, key="book-1")
    assert again is not done and supervisor.get("book-1") is again
    again.stop()
    with pytest.raises(FlowStopped):
        again.result(timeout=5)
    assert supervisor.get("book-1") is None
    third = supervisor.start(idle, key="book-1")
    assert third is not again
    supervisor.shutdown()


def test_a_key_whose_runner_is_stopping_gets_a_new_one(coflow_backend: Any) -> None:
    cleaning = Cleaning(cleanup_seconds=0.05)
    supervisor = Supervisor(backend=coflow_backend)
    stopping = supervisor.start(cleaning.flow, key="book-1")
    stopping.stop()  # its cleanup takes a while: it takes no more signals meanwhile
    assert supervisor.get("book-1") is None
    fresh = supervisor.start(cleaning.flow, key="book-1")
    assert fresh is not stopping
    supervisor.shutdown()
    assert cleaning.cleaned == ["idle", "idle"]


def test_a_key_whose_runner_the_supervisor_gave_up_on_gets_a_new_one(
    coflow_backend: Any,
) -> None:
    def failing() -> FlowGenerator:
        yield coflow.set_state(lambda s: 1 / 0)

    supervisor = Supervisor(backend=coflow_backend, max_restarts=1)
    gave_up = supervisor.start(failing, key="book-1")
    with pytest.raises(coflow.FlowFailed):
        gave_up.result(timeout=5)
    assert gave_up.restarts == 1
    assert supervisor.get("book-1") is None
    replaced = supervisor.start(idle, key="book-1")
    assert replaced is not gave_up
    supervisor.shutdown()


def test_an_unhashable_key_is_a_type_error_naming_it() -> None:
    supervisor = Supervisor()
    with pytest.raises(TypeError, match=r"key.*\['book', 1\]"):
        supervisor.start(idle, key=["book", 1])
    with pytest.raises(TypeError, match=r"key.*\{'book': 1\}"):
        supervisor.get({"book": 1})
    assert supervisor.children() == []


def test_keys_are_dropped_when_their_runners_end(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    runners = [supervisor.start(quick, key=number) for number in range(10_000)]
    assert runners[-1].result(timeout=5) == "done"  # the others ran before it, in order
    assert all(runner.status == "done" for runner in runners)
    assert all(supervisor.get(number) is None for number in range(10_000))
    assert supervisor.children() == []
    released = [weakref.ref(runner) for runner in runners]
    del runners
    gc.collect()
    assert [ref for ref in released if ref() is not None] == []  # the key map let them go


@pytest.mark.coflow_backends("threads", "gevent", "asyncio")
def test_sixteen_threads_starting_one_key_at_once_get_one_runner(coflow_backend: Any) -> None:
    cleaning = Cleaning()
    supervisor = Supervisor(backend=coflow_backend)
    barrier = threading.Barrier(16)

    def start() -> Runner:
        barrier.wait(timeout=5)
        return begun(supervisor.start(cleaning.flow, key="book-1"))

    got = in_threads(coflow_backend, start, 16)
    assert len(got) == 16 and all(runner is got[0] for runner in got)
    assert supervisor.children() == [got[0]]
    supervisor.shutdown(grace=5.0)
    assert cleaning.runs == 1 and cleaning.cleaned == ["idle"]


# lifespan


def test_lifespan_installs_the_supervisor_and_shuts_it_down_at_the_end(
    coflow_backend: Any,
) -> None:
    cleaning = Cleaning()
    supervisor = Supervisor(backend=coflow_backend)
    with supervisor.lifespan(grace=5.0) as entered:
        assert entered is supervisor
        runner = in_thread(
            coflow_backend, lambda: begun(coflow.start(cleaning.flow))
        )  # a thread sees it
        assert supervisor.children() == [runner]
    assert runner.status == "stopped" and cleaning.cleaned == ["idle"]
    assert nothing_installed()
    after = in_thread(coflow_backend, lambda: coflow.start(idle, backend=coflow_backend))
    assert supervisor.children() == []  # not supervised any more
    after.stop()


def test_lifespan_uninstalls_even_when_shutdown_times_out(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    with pytest.raises(FlowTimeout, match="1 flow still running"):
        with supervisor.lifespan(grace=None, timeout=0.05):
            runner = coflow.start(stubborn)
    assert nothing_installed()
    runner.stop(grace=0)
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)


def test_a_second_lifespan_opens_the_supervisor_again(coflow_backend: Any) -> None:
    supervisor = Supervisor(backend=coflow_backend)
    with supervisor.lifespan():
        first = supervisor.start(idle, key="app")
    with supervisor.lifespan():  # a test client runs an app's lifespan once per test
        second = supervisor.start(idle, key="app")
    assert first.status == second.status == "stopped" and first is not second


def test_lifespan_refuses_while_another_supervisor_is_installed() -> None:
    other = Supervisor().install()
    try:
        with pytest.raises(RuntimeError, match="another supervisor is installed"):
            with Supervisor().lifespan():
                pass  # pragma: no cover
    finally:
        other.uninstall()


def test_lifespan_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="grace"):
        Supervisor().lifespan(grace=-1)
    with pytest.raises(TypeError, match="timeout"):
        Supervisor().lifespan(timeout="soon")


def test_async_lifespan_lands_flows_from_worker_threads_on_the_apps_loop() -> None:
    cleaning = Cleaning()
    supervisor = Supervisor()

    async def main() -> Runner:
        async with supervisor.lifespan(grace=5.0) as entered:
            assert entered is supervisor
            runner: Runner = await asyncio.to_thread(coflow.start, cleaning.flow)
            keyed: Runner = await asyncio.to_thread(supervisor.start, cleaning.flow, key="k")
            for started in (runner, keyed):
                assert started.backend.name == "asyncio"
                assert started.backend.loop is asyncio.get_running_loop()  # type: ignore[attr-defined]
            assert supervisor.children() == [runner, keyed]
        return runner

    runner = asyncio.run(main())
    assert runner.status == "stopped" and cleaning.cleaned == ["idle", "idle"]
    assert supervisor.backend is None  # unbound from the loop, which has gone
    assert nothing_installed()


def test_async_lifespan_keeps_a_backend_of_the_supervisors_own() -> None:
    supervisor = Supervisor(backend="threads")

    async def main() -> Runner:
        async with supervisor.lifespan():
            runner: Runner = await asyncio.to_thread(coflow.start, idle)
        return runner

    assert asyncio.run(main()).backend.name == "threads"
    assert supervisor.backend == "threads"


def test_a_blocking_lifespan_inside_an_event_loop_refuses_and_says_async_with() -> None:
    supervisor = Supervisor()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="async with"):
            with supervisor.lifespan():
                pass  # pragma: no cover

    asyncio.run(main())
    assert nothing_installed()
