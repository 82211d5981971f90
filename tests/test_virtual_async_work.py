"""Async work on the virtual clock: coroutine work runs on an asyncio loop whose time is the clock.

``asyncio.sleep``, ``wait_for``, ``asyncio.timeout``, ``call_later``, events and
queues inside ``run``/``parallel``/``race`` work take virtual time, in order with
the flows' own timers, in no wall time; executor work holds the clock still;
a run in which nothing can wake a flow raises ``Deadlock`` naming the pending
asyncio tasks; cancellation reaches the work's task as on the asyncio backend.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

import coflow
from coflow import (
    Deadlock,
    FlowFailed,
    FlowGenerator,
    FlowTimeout,
    Ok,
    Update,
    debounce,
    parallel,
    race,
    run,
    set_state,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend


def test_an_hour_of_asyncio_sleep_in_work_passes_at_once_and_exactly() -> None:
    backend = VirtualBackend()
    seen = []

    async def push(state: int) -> Ok[int]:
        await asyncio.sleep(3600)
        seen.append((backend.now(), asyncio.get_running_loop().time()))
        return Ok(state + 1)

    started = time.perf_counter()
    runner = coflow.start(run(push), initial_state=0, backend=backend)
    assert runner.result() == 1
    assert seen == [(3600.0, 3600.0)]
    assert time.perf_counter() - started < 1.0


def test_a_plain_function_returning_a_coroutine_is_awaited_on_the_clock() -> None:
    backend = VirtualBackend()

    async def later(value: int) -> Ok[int]:
        await asyncio.sleep(2)
        return Ok(value)

    runner = coflow.start(run(lambda state: later(state + 5)), initial_state=1, backend=backend)
    assert runner.result() == 6
    assert backend.now() == 2.0


def test_a_signal_lands_while_async_work_runs_and_update_keeps_it() -> None:
    backend = VirtualBackend()

    async def push(state: dict[str, Any]) -> Update[dict[str, Any]]:
        await asyncio.sleep(0.3)
        return Update(lambda now: {**now, "pushes": now["pushes"] + 1})

    @coflow.flow(initial_state={"pushes": 0, "edits": 0})
    def pushing() -> FlowGenerator:
        yield run(push)

    runner = coflow.start(pushing, backend=backend)
    backend.advance(0.1)
    runner.signal(lambda s: {**s, "edits": s["edits"] + 1})
    assert runner.result() == {"pushes": 1, "edits": 1}
    assert backend.now() == pytest.approx(0.3)


def test_a_timed_out_attempt_cancels_its_task_at_the_exact_time() -> None:
    backend = VirtualBackend()
    log = []

    async def slow(state: int) -> Ok[int]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append(("cancelled", backend.now()))
            raise
        return Ok(state + 1)

    @coflow.flow(initial_state=0)
    def impatient() -> FlowGenerator:
        try:
            yield run(slow, timeout=1.5)
        except FlowTimeout:
            log.append(("timed out", backend.now()))

    assert coflow.start(impatient, backend=backend).result() == 0
    assert log == [("cancelled", 1.5), ("timed out", 1.5)]


def test_retries_of_async_work_follow_the_backoff_schedule_exactly() -> None:
    backend = VirtualBackend()
    attempts = []

    async def flaky(state: int) -> Ok[int]:
        attempts.append(backend.now())
        await asyncio.sleep(0.1)
        if len(attempts) < 4:
            raise ConnectionError("down")
        return Ok(state + 1)

    step = run(flaky, retries=3, backoff="exponential", base_delay=0.2)
    assert coflow.start(step, initial_state=0, backend=backend).result() == 1
    # Each attempt lasts 0.1 s, then waits 0.2, 0.4, 0.8 s before the next.
    assert attempts == pytest.approx([0.0, 0.3, 0.8, 1.7])


def test_a_stop_cancels_the_work_task_and_its_cleanup_runs_at_the_stop_time() -> None:
    backend = VirtualBackend()
    cleaned = []

    async def long_push(state: int) -> Ok[int]:
        try:
            await asyncio.sleep(600)
        finally:
            cleaned.append(backend.now())
        return Ok(state)

    runner = coflow.start(run(long_push), initial_state=0, backend=backend)
    backend.advance(5)
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result()
    assert cleaned == [5.0]


def test_race_of_async_work_is_won_by_the_shorter_and_the_loser_is_cancelled() -> None:
    backend = VirtualBackend()
    losers = []

    async def after(seconds: float, value: str) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            losers.append((value, backend.now()))
            raise
        return value

    @coflow.flow(initial_state={})
    def racing() -> FlowGenerator:
        winner = yield race([lambda: after(3, "slow"), lambda: after(1, "fast")])
        yield set_state(lambda s: {"winner": winner, "at": backend.now()})

    assert coflow.start(racing, backend=backend).result() == {"winner": "fast", "at": 1.0}
    assert losers == [("slow", 1.0)]


def test_parallel_async_work_shares_events_and_queues_in_virtual_time() -> None:
    backend = VirtualBackend()
    ready = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> str:
        for item in range(3):
            await asyncio.sleep(1)
            await queue.put(item)
        ready.set()
        return "produced"

    async def consumer() -> list[tuple[int, float]]:
        got = []
        for _ in range(3):
            got.append((await queue.get(), backend.now()))
        await ready.wait()
        return got

    step = parallel([producer, consumer])
    result = coflow.start(step, initial_state=None, backend=backend).result()
    assert result is None  # parallel without collect_as keeps the state
    assert backend.now() == 3.0


def test_wait_for_and_asyncio_timeout_fire_at_exact_virtual_times() -> None:
    backend = VirtualBackend()
    fired = []

    async def guarded(state: int) -> Ok[int]:
        try:
            await asyncio.wait_for(asyncio.sleep(100), timeout=2)
        except asyncio.TimeoutError:
            fired.append(("wait_for", backend.now()))
        try:
            async with asyncio.timeout(3):  # type: ignore[attr-defined]
                await asyncio.sleep(100)
        except TimeoutError:
            fired.append(("timeout", backend.now()))
        return Ok(state)

    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is new in Python 3.11")
    coflow.start(run(guarded), initial_state=0, backend=backend).result()
    assert fired == [("wait_for", 2.0), ("timeout", 5.0)]


def test_ties_between_flow_timers_and_asyncio_timers_fire_in_the_order_set() -> None:
    backend = VirtualBackend()
    order = []

    async def sleeper(label: str) -> None:
        await asyncio.sleep(1)
        order.append(label)

    def waiter(label: str) -> Any:
        def body() -> FlowGenerator:
            yield wait(1)
            order.append(label)

        return body

    coflow.start(waiter("flow 1"), backend=backend)
    coflow.start(run(lambda s: sleeper("work 1")), backend=backend)
    coflow.start(waiter("flow 2"), backend=backend)
    coflow.start(run(lambda s: sleeper("work 2")), backend=backend)
    backend.run()
    # A work's task first runs after the flows already ready, as a task created on a real
    # loop does: its sleep is set after both flows' waits.  Each pair keeps its own order.
    assert order == ["flow 1", "flow 2", "work 1", "work 2"]


def test_executor_work_started_by_async_work_holds_the_clock_still() -> None:
    backend = VirtualBackend()

    async def in_thread(state: dict[str, Any]) -> Update[dict[str, Any]]:
        await asyncio.to_thread(time.sleep, 0.05)  # 50 ms of real time in a real thread
        finished = backend.now()
        return Update(lambda now: {**now, "thread_done_at": finished})

    async def sleeper(state: dict[str, Any]) -> Update[dict[str, Any]]:
        await asyncio.sleep(0.01)
        finished = backend.now()
        return Update(lambda now: {**now, "sleeper_done_at": finished})

    step = parallel([run(in_thread), run(sleeper)])
    final = coflow.start(step, initial_state={}, backend=backend).result()
    # The thread took real time, but no virtual time passed meanwhile: the sleeper's timer
    # could not fire before the thread was done.
    assert final == {"thread_done_at": 0.0, "sleeper_done_at": 0.01}


def test_a_flow_whose_async_work_can_never_end_is_a_deadlock_naming_the_task() -> None:
    backend = VirtualBackend()
    never = asyncio.Event()

    async def wait_for_approval(state: int) -> Ok[int]:
        await never.wait()
        return Ok(state)

    runner = coflow.start(run(wait_for_approval), initial_state=0, backend=backend)
    with pytest.raises(Deadlock, match=r"asyncio tasks pending: .*wait_for_approval"):
        runner.result()
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result()


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_a_base_exception_of_async_work_fails_the_flow_not_the_clock(
    raised: type[BaseException],
) -> None:
    backend = VirtualBackend()

    async def interrupted(state: int) -> Ok[int]:
        await asyncio.sleep(1)
        raise raised()

    runner = coflow.start(run(interrupted), initial_state=0, backend=backend)
    with pytest.raises(FlowFailed) as failed:
        runner.result()
    assert isinstance(failed.value.__cause__, raised)
    survivor = coflow.start(run(lambda s: Ok(s + 1)), initial_state=1, backend=backend)
    assert survivor.result() == 2  # the clock still serves its other flows


def test_the_same_run_twice_gives_identical_event_logs() -> None:
    def one_run() -> list[tuple[float, Any]]:
        backend = VirtualBackend(seed=7)
        log: list[tuple[float, Any]] = []

        async def flaky(state: int) -> Ok[int]:
            await asyncio.sleep(0.25)
            if backend.random.random() < 0.5:
                raise ConnectionError("down")
            return Ok(state + 1)

        step = run(flaky, retries=5, backoff="exponential", base_delay=0.1, jitter=True)
        notify = lambda event: log.append((backend.now(), type(event).__name__))  # noqa: E731
        coflow.start(step, initial_state=0, backend=backend, notify=notify).result()
        return log

    assert one_run() == one_run()


# The book-sync flow of the README, with async work pushing through httpx.


def _book_sync(client: httpx.AsyncClient) -> coflow.Flow:
    async def push_book(state: dict[str, Any]) -> Update[dict[str, Any]]:
        response = await client.put(f"https://books.example/{state['book_id']}", json=state)
        response.raise_for_status()
        return Update(lambda s: {**s, "dirty": False} if s["dirty"] == "processing" else s)

    @coflow.flow(initial_state={"dirty": False, "book_id": "b-1", "text": ""})
    def sync_book() -> FlowGenerator:
        while True:
            yield wait_until(lambda s: s["dirty"] is True)
            yield debounce(0.5)
            yield set_state(lambda s: {**s, "dirty": "processing"})
            yield run(push_book, retries=3, backoff="exponential", base_delay=0.2)

    return sync_book


def _api(failures: int, latency: float, log: list[tuple[float, str]], backend: Any) -> Any:
    """A books API that fails ``failures`` times, and takes ``latency`` virtual seconds."""
    calls = []

    async def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        log.append((backend.now(), f"PUT {request.url.path} #{len(calls)}"))
        await asyncio.sleep(latency)
        if len(calls) <= failures:
            return httpx.Response(503)
        return httpx.Response(200, json={"ok": True})

    return handle


def test_the_async_book_sync_pushes_once_half_a_second_after_the_burst() -> None:
    backend = VirtualBackend()
    log: list[tuple[float, str]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(_api(0, 0.0, log, backend)))
    runner = coflow.start(_book_sync(client), backend=backend)
    for _ in range(3):
        runner.signal(lambda s: {**s, "dirty": True})
        backend.advance(0.2)
    backend.advance(5)
    assert log == [(pytest.approx(0.9), "PUT /b-1 #1")]
    assert runner.get_state()["dirty"] is False
    runner.stop()


def test_the_async_book_sync_retries_at_the_exponential_schedule() -> None:
    backend = VirtualBackend()
    log: list[tuple[float, str]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(_api(3, 0.0, log, backend)))
    runner = coflow.start(_book_sync(client), backend=backend)
    runner.signal(lambda s: {**s, "dirty": True})
    backend.advance(10)
    assert [when for when, _ in log] == pytest.approx([0.5, 0.7, 1.1, 1.9])
    assert runner.get_state()["dirty"] is False
    runner.stop()


def test_an_edit_during_a_slow_async_push_is_pushed_after_it() -> None:
    backend = VirtualBackend()
    log: list[tuple[float, str]] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(_api(0, 0.3, log, backend)))
    runner = coflow.start(_book_sync(client), backend=backend)
    runner.signal(lambda s: {**s, "dirty": True, "text": "first"})
    backend.advance(0.6)  # the push started at 0.5 and lasts until 0.8
    runner.signal(lambda s: {**s, "dirty": True, "text": "second"})
    backend.advance(10)
    assert log == [
        (pytest.approx(0.5), "PUT /b-1 #1"),
        (pytest.approx(1.3), "PUT /b-1 #2"),  # 0.5 s after the push that the edit outlived
    ]
    assert runner.get_state()["dirty"] is False
    runner.stop()


_EVENT_LOG_PROGRAM = """
import asyncio
import coflow
from coflow import Ok, run
from coflow.backends.virtual import VirtualBackend

backend = VirtualBackend(seed=3)

async def flaky(state):
    await asyncio.sleep(0.25)
    if backend.random.random() < 0.5:
        raise ConnectionError("down")
    return Ok({**state, "pushes": state["pushes"] + 1})

step = run(flaky, retries=8, backoff="exponential", base_delay=0.1, jitter=True)
log = []
runner = coflow.start(step, initial_state={"pushes": 0}, backend=backend,
                      notify=lambda event: log.append((backend.now(), repr(event))))
runner.result()
print(log)
"""


def test_two_processes_give_identical_event_logs(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    logs = []
    for hash_seed in ("1", "2"):  # string hashing differs between the two processes
        done = subprocess.run(
            [sys.executable, "-c", _EVENT_LOG_PROGRAM],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=tmp_path,  # the installed coflow, not a source tree's (its backends/ is apart)
            check=True,
        )
        logs.append(done.stdout)
    assert logs[0] == logs[1]
    assert "FlowDone" in logs[0]
