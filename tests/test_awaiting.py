"""Awaiting a flow from async code waits in the awaiting code's library (asyncio or trio).

Whatever the flow's backend, ``await runner.wait()``, ``await runner.signal(fn)``
and ``async for`` over ``runner.events()`` work from a trio task as from an
asyncio one; on every backend (the conformance suite).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from conftest import needs_gevent, run_async

import coflow
from coflow import FlowFailed, FlowGenerator, FlowState, set_state, wait, wait_until

trio = pytest.importorskip("trio")

T = TypeVar("T")


def run_trio(backend: Any, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``trio.run(main)``, from a thread where it cannot starve the backend (see run_async)."""
    if backend.name == "gevent":
        from gevent import get_hub

        return get_hub().threadpool.spawn(trio.run, main).get()  # type: ignore[no-any-return]
    return trio.run(main)  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "trio"])
def run_in(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run a coroutine function to its end under asyncio or trio."""
    return run_async if request.param == "asyncio" else run_trio


@coflow.flow(initial_state=0)
def ticking() -> FlowGenerator:
    for _ in range(3):
        yield wait(0.01)
        yield set_state(lambda s: s + 1)


def test_a_task_awaits_the_end_of_a_flow(coflow_backend: Any, run_in: Callable[..., Any]) -> None:
    async def main() -> Any:
        return await coflow.start(ticking, backend=coflow_backend).wait()

    assert run_in(coflow_backend, main) == 3


def test_a_task_waiting_with_a_timeout_gets_flow_timeout_and_the_flow_runs_on(
    coflow_backend: Any, run_in: Callable[..., Any]
) -> None:
    def slow() -> FlowGenerator:
        yield wait(0.3)
        yield set_state(lambda s: "finished")

    runner = coflow.start(slow, backend=coflow_backend)

    async def main() -> Any:
        with pytest.raises(coflow.FlowTimeout, match="waiting for flow 'slow'"):
            await runner.wait(timeout=0.05)
        assert runner.status == "running"
        return await runner.wait(timeout=5)

    assert run_in(coflow_backend, main) == "finished"


def test_a_bad_wait_timeout_is_refused(coflow_backend: Any, run_in: Callable[..., Any]) -> None:
    runner = coflow.start(ticking, backend=coflow_backend)

    async def main() -> Any:
        with pytest.raises(ValueError, match="timeout"):
            await runner.wait(timeout=-1)
        return await runner.wait()

    assert run_in(coflow_backend, main) == 3


def test_a_task_awaiting_a_failed_flow_gets_flow_failed(
    coflow_backend: Any, run_in: Callable[..., Any]
) -> None:
    reason = ValueError("bad input")

    @coflow.flow(initial_state=0)
    def broken() -> FlowGenerator:
        yield wait(0.01)
        raise reason

    async def main() -> Any:
        return await coflow.start(broken, backend=coflow_backend).wait()

    with pytest.raises(FlowFailed) as failed:
        run_in(coflow_backend, main)
    assert failed.value.__cause__ is reason


def test_a_task_awaits_a_signal_and_reads_the_events(
    coflow_backend: Any, run_in: Callable[..., Any]
) -> None:
    @coflow.flow(initial_state=0)
    def until_ten() -> FlowGenerator:
        yield wait_until(lambda s: s >= 10)

    async def main() -> tuple[Any, list[Any]]:
        runner = coflow.start(until_ten, backend=coflow_backend)
        stream = runner.events()
        applied = await runner.signal(lambda s: s + 10)
        seen = [event.state async for event in stream if isinstance(event, FlowState)]
        return applied, seen

    applied, seen = run_in(coflow_backend, main)
    assert applied == 10
    assert seen == [10]


def test_a_trio_task_cancelled_while_it_reads_the_events_closes_the_stream(
    coflow_backend: Any, is_virtual: bool
) -> None:
    if is_virtual:
        pytest.skip("on the virtual clock, awaiting drives the flow to its end at once")

    @coflow.flow(initial_state=0)
    def forever() -> FlowGenerator:
        while True:
            yield wait(0.5)

    runner = coflow.start(forever, backend=coflow_backend)
    stream = runner.events()

    async def main() -> None:
        with trio.move_on_after(0.02):
            async for _ in stream:
                pass

    run_trio(coflow_backend, main)
    assert stream.closed
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)


def test_awaiting_with_no_async_library_running_says_what_it_needs() -> None:
    runner = coflow.start(ticking, backend="threads")
    waiting = runner.wait()
    with pytest.raises(RuntimeError, match="needs a running asyncio event loop or trio run"):
        waiting.send(None)
    waiting.close()
    assert runner.result(timeout=5) == 3


@needs_gevent
def test_awaiting_a_gevent_flow_from_a_loop_in_the_hubs_thread_is_refused() -> None:
    import asyncio

    from coflow.backends.gevent import GeventBackend

    runner = coflow.start(ticking, backend=GeventBackend())  # this thread's hub

    async def main() -> Any:
        return await runner.wait()

    with pytest.raises(RuntimeError, match="in the thread of the gevent hub would block it"):
        asyncio.run(main())
    assert runner.result(timeout=5) == 3
