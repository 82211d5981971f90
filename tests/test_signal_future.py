"""The future ``Runner.signal`` returns behaves as a ``concurrent.futures.Future`` in every use.

It builds its condition variable only when someone looks at it, so each test
looks at it in a different way, before or after the signal is applied.  It may
also be awaited, on every backend; and its blocking ``result()`` refuses, at
once, to wait on the thread of the scheduler that must apply it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    REAL_BACKENDS,
    backend_params,
    needs_gevent,
    run_async,
)

import coflow
from coflow import wait_until
from coflow.backends.virtual import VirtualBackend
from coflow.pytest_plugin import open_backend


def _blocked_runner() -> tuple[VirtualBackend, coflow.Runner]:
    backend = VirtualBackend()

    def waits() -> Iterator[Any]:
        yield wait_until(lambda s: s >= 100)

    runner = coflow.start(waits, backend=backend, initial_state=0)
    backend.run_until_idle()
    return backend, runner


def _add(n: int) -> Any:
    return lambda s: s + n


def test_a_future_nobody_looked_at_holds_the_new_state() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(1))
    backend.run_until_idle()
    assert future.done()
    assert future.result(timeout=0) == 1


def test_result_waited_for_in_another_thread_is_woken() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(2))
    seen: list[Any] = []
    waiting = threading.Event()

    def reader() -> None:
        waiting.set()
        seen.append(future.result(timeout=5))

    thread = threading.Thread(target=reader)
    thread.start()
    assert waiting.wait(timeout=5)
    backend.run_until_idle()  # applied before or after the reader blocks: either way it wakes
    thread.join(timeout=5)
    assert seen == [2]


def test_done_callbacks_added_before_the_signal_is_applied_are_called() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(3))
    called: list[Any] = []
    future.add_done_callback(lambda done: called.append(done.result()))
    assert called == []
    backend.run_until_idle()
    assert called == [3]


def test_concurrent_futures_wait_sees_it_complete() -> None:
    backend, runner = _blocked_runner()
    futures = [runner.signal(_add(1)) for _ in range(3)]
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(concurrent.futures.wait(futures, timeout=5))
    )
    thread.start()
    backend.run_until_idle()
    thread.join(timeout=5)
    assert len(outcome[0].done) == 3
    assert sorted(f.result() for f in futures) == [1, 2, 3]


def test_a_sent_signal_cannot_be_cancelled_and_is_applied() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(1))
    assert not future.cancel()
    backend.run_until_idle()
    assert not future.cancelled()
    assert future.result(timeout=0) == 1
    assert not future.cancel()


def test_a_reader_that_looked_before_the_signal_was_applied_sees_the_outcome() -> None:
    backend, runner = _blocked_runner()
    future = runner.signal(_add(5))
    assert not future.done()  # makes the condition variable before the outcome exists
    backend.run_until_idle()
    assert future.done()
    assert future.result(timeout=0) == 5


def test_a_raising_signal_puts_its_error_in_the_future_and_keeps_the_state() -> None:
    backend, runner = _blocked_runner()
    error = ValueError("bad signal")

    def fail(state: int) -> int:
        raise error

    future = runner.signal(fail)
    backend.run_until_idle()
    assert future.exception(timeout=0) is error
    assert runner.get_state() == 0


def test_readers_racing_the_scheduler_all_see_their_outcome() -> None:
    backend, runner = _blocked_runner()
    futures = [runner.signal(_add(1)) for _ in range(2_000)]
    seen: list[Any] = []

    def reader() -> None:
        seen.extend(future.result(timeout=5) for future in futures)

    thread = threading.Thread(target=reader)
    thread.start()
    backend.run_until_idle()  # settles while the reader looks, in whatever interleaving
    thread.join(timeout=10)
    assert seen == list(range(1, 2_001))


# Awaiting, and waiting on the scheduler's own thread


def _waits() -> Iterator[Any]:
    yield wait_until(lambda s: s >= 100)


@pytest.fixture(params=backend_params(REAL_BACKENDS))
def real_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    with open_backend(request.param) as made:
        yield made


def test_awaiting_the_future_gives_the_new_state(coflow_backend: Any) -> None:
    runner = coflow.start(_waits, initial_state=0, backend=coflow_backend)

    async def main() -> tuple[Any, Any]:
        future = runner.signal(_add(1))
        return await future, await future  # a settled future gives its outcome again

    assert run_async(coflow_backend, main) == (1, 1)
    runner.stop()


def test_awaiting_a_raising_signal_raises_its_error(coflow_backend: Any) -> None:
    runner = coflow.start(_waits, initial_state=0, backend=coflow_backend)
    error = ValueError("bad signal")

    def fail(state: int) -> int:
        raise error

    async def main() -> BaseException:
        with pytest.raises(ValueError) as raised:
            await runner.signal(fail)
        return raised.value

    assert run_async(coflow_backend, main) is error
    assert runner.get_state() == 0
    runner.stop()


def test_result_on_the_asyncio_loops_thread_raises_at_once_and_await_works() -> None:
    with open_backend("asyncio") as backend:
        loop = backend.loop  # type: ignore[attr-defined]
        runner = coflow.start(_waits, initial_state=0, backend=backend)

        async def on_the_loop() -> tuple[str, Any, Any]:
            future = runner.signal(_add(1))
            with pytest.raises(RuntimeError) as without_timeout:
                future.result()
            with pytest.raises(RuntimeError):
                future.exception(timeout=1)
            new_state = await future
            return str(without_timeout.value), new_state, future.result()  # settled: at once

        message, awaited, settled = asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result(
            timeout=5
        )
        runner.stop()
    assert "would block the asyncio event loop" in message
    assert "`await` the future" in message
    assert (awaited, settled) == (1, 1)


@needs_gevent
def test_result_in_the_gevent_hub_raises_at_once_and_a_greenlet_may_wait() -> None:
    import gevent.event
    from gevent import get_hub

    with open_backend("gevent") as backend:
        runner = coflow.start(_waits, initial_state=0, backend=backend)
        seen: dict[str, Any] = {}
        ran = gevent.event.Event()

        def in_the_hub() -> None:
            future = seen["future"] = runner.signal(_add(1))
            try:
                future.result(timeout=1)
            except RuntimeError as error:
                seen["error"] = str(error)
            ran.set()

        get_hub().loop.run_callback(in_the_hub)
        assert ran.wait(timeout=5)
        # This greenlet is in the hub's thread too, but waiting blocks only itself.
        assert seen["future"].result(timeout=5) == 1
        runner.stop()
    assert "would block the gevent hub" in seen["error"]


def test_result_in_a_notify_callback_on_the_scheduler_raises_at_once(real_backend: Any) -> None:
    seen: list[Any] = []

    def notify(event: Any) -> None:
        if event.state == 1:
            future = event.runner.signal(_add(1))
            try:
                future.result(timeout=1)
            except RuntimeError as error:
                seen.append(error)

    runner = coflow.start(_waits, initial_state=0, backend=real_backend, notify=notify)
    runner.signal(_add(1))
    runner.signal(_add(98))  # applied after the one sent from notify
    assert runner.result(timeout=5) == 100
    assert [type(error) for error in seen] == [RuntimeError]


def test_result_from_another_thread_blocks_that_thread_until_applied(real_backend: Any) -> None:
    runner = coflow.start(_waits, initial_state=0, backend=real_backend)
    future = runner.signal(_add(100))
    if real_backend.name == "gevent":  # from a thread of the hub's pool, so the hub runs
        from gevent import get_hub

        value = get_hub().threadpool.spawn(future.result, 5).get(timeout=5)
    else:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            value = pool.submit(future.result, 5).result(timeout=5)
    assert value == 100
    assert runner.result(timeout=5) == 100
