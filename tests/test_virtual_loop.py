"""The virtual asyncio event loop: ``coflow.testing.virtual_loop()`` and ``run_virtual()``.

Each test is a timeline on the loop's clock: what happened at which virtual
time, asserted whole.  Wall time is measured where the point is that none
passes; the only real waits are the executor work and the socket that the
tests are about, each a few hundredths of a second.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import coflow
from coflow import Deadlock, Ok, run, set_state, wait
from coflow.backends.virtual_loop import VirtualClock, VirtualEventLoop
from coflow.testing import run_virtual, virtual_loop

needs_asyncio_timeout = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="asyncio.timeout is new in Python 3.11"
)


def timed(main: Coroutine[Any, Any, Any], **options: Any) -> tuple[Any, float]:
    """``run_virtual(main)``'s result, and the wall time it took."""
    began = time.perf_counter()
    result = run_virtual(main, **options)
    return result, time.perf_counter() - began


def now() -> float:
    return asyncio.get_running_loop().time()


# --- time ----------------------------------------------------------------------------------------


def test_an_hour_of_sleep_passes_at_once_and_exactly() -> None:
    async def main() -> tuple[float, float]:
        began = now()
        await asyncio.sleep(3600)
        return began, now()

    (began, ended), wall = timed(main())
    assert (began, ended) == (0.0, 3600.0)
    assert wall < 0.5


def test_the_clock_starts_where_asked_and_keeps_exact_times_far_from_zero() -> None:
    # Far from 0 a float's step is wider than asyncio's 1 ns resolution: a timer due "now"
    # must still count as due, or the loop would spin at that instant forever.
    start = 2.0**40

    async def main() -> list[float]:
        times = [now()]
        for _ in range(3):
            await asyncio.sleep(0.001)
            times.append(now())
        return times

    loop = virtual_loop(start)
    watchdog = threading.Timer(5.0, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    try:
        times = loop.run_until_complete(main())
    finally:
        watchdog.cancel()
        loop.close()
    expected = [start]
    for _ in range(3):
        expected.append(expected[-1] + 0.001)
    assert times == expected


def test_timers_fire_at_their_exact_virtual_times_in_time_order() -> None:
    async def main() -> list[tuple[float, str]]:
        log: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()
        loop.call_later(2.5, lambda: log.append((now(), "2.5 later")))
        loop.call_at(1.25, lambda: log.append((now(), "at 1.25")))
        loop.call_later(0.1, lambda: log.append((now(), "0.1 later")))
        await asyncio.sleep(3)
        return log

    assert run_virtual(main()) == [(0.1, "0.1 later"), (1.25, "at 1.25"), (2.5, "2.5 later")]


def test_wait_for_times_out_at_the_exact_virtual_time() -> None:
    async def main() -> list[tuple[float, str]]:
        log = [(now(), "asked")]
        try:
            await asyncio.wait_for(asyncio.sleep(60), timeout=2.5)
        except asyncio.TimeoutError:
            log.append((now(), "timed out"))
        result = await asyncio.wait_for(finishes_at_once(), timeout=2.5)
        log.append((now(), result))
        return log

    async def finishes_at_once() -> str:
        await asyncio.sleep(1)
        return "in time"

    assert run_virtual(main()) == [(0.0, "asked"), (2.5, "timed out"), (3.5, "in time")]


@needs_asyncio_timeout
def test_asyncio_timeout_fires_at_the_exact_virtual_time_and_can_be_moved() -> None:
    async def main() -> list[tuple[float, str]]:
        log = []
        try:
            async with asyncio.timeout(10) as deadline:
                await asyncio.sleep(4)
                deadline.reschedule(now() + 1.5)  # a deadline moved closer
                await asyncio.sleep(60)
        except TimeoutError:
            log.append((now(), "timed out"))
        return log

    assert run_virtual(main()) == [(5.5, "timed out")]


# --- ordering ------------------------------------------------------------------------------------


def test_timers_due_at_one_instant_fire_in_the_order_they_were_set() -> None:
    async def main() -> list[str]:
        order: list[str] = []
        loop = asyncio.get_running_loop()
        for i in range(20):  # two instants, interleaved, and call_at mixed with call_later
            loop.call_later(1.0, order.append, f"1:{i}")
            loop.call_at(2.0, order.append, f"2:{i}")
        await asyncio.sleep(3)
        return order

    assert run_virtual(main()) == [f"1:{i}" for i in range(20)] + [f"2:{i}" for i in range(20)]


def test_equal_timers_at_one_instant_are_each_a_timer_of_their_own() -> None:
    # asyncio's handles compare equal when deadline, callback and arguments are: each still
    # fires once, and a cancel cancels that one alone.
    async def main() -> list[tuple[float, str]]:
        fired: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()

        def note(label: str) -> None:
            fired.append((loop.time(), label))

        handles = [loop.call_at(1.0, note, "tick") for _ in range(4)]
        handles[1].cancel()
        late = [loop.call_later(2.0, note, "tock") for _ in range(3)]
        late[2].cancel()
        await asyncio.sleep(3)
        return fired

    assert run_virtual(main()) == [(1.0, "tick")] * 3 + [(2.0, "tock")] * 2


def test_many_timers_at_one_instant_are_filed_and_cancelled_one_by_one() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        handles = [loop.call_at(5.0, fired.append, i) for i in range(5_000)]
        for handle in handles[::2]:
            handle.cancel()
        await asyncio.sleep(6)
        assert fired == list(range(1, 5_000, 2))
        return len(fired)

    assert run_virtual(main()) == 2_500


def test_asyncios_own_loop_does_not_keep_that_order() -> None:
    # Why the virtual loop orders ties itself: asyncio's heap compares deadlines alone.
    loop = asyncio.new_event_loop()
    try:
        order: list[int] = []
        when = loop.time() - 1.0  # due already: no real waiting
        for i in range(10):
            loop.call_at(when, order.append, i)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert sorted(order) == list(range(10))
    assert order != list(range(10))


def test_a_zero_delay_timer_runs_after_the_callbacks_already_ready() -> None:
    async def main() -> list[str]:
        order: list[str] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "soon 1")
        loop.call_later(0, order.append, "later 0")
        loop.call_soon(order.append, "soon 2")
        await asyncio.sleep(0.5)
        return order

    assert run_virtual(main()) == ["soon 1", "soon 2", "later 0"]


def test_tasks_sleeping_to_one_instant_resume_in_the_order_they_slept() -> None:
    async def sleeper(name: str, log: list[str]) -> None:
        await asyncio.sleep(5 - now())  # all to the instant 5, from different times
        log.append(name)

    async def main() -> list[str]:
        log: list[str] = []
        tasks = []
        for name in ["a", "b", "c", "d"]:
            tasks.append(asyncio.create_task(sleeper(name, log)))
            await asyncio.sleep(1)
        await asyncio.gather(*tasks)
        return log

    assert run_virtual(main()) == ["a", "b", "c", "d"]


# --- asyncio's primitives ------------------------------------------------------------------------


def test_an_event_wakes_its_waiters_when_set_at_a_virtual_time() -> None:
    async def main() -> list[tuple[float, str]]:
        log = []
        ready = asyncio.Event()

        async def waiter(name: str) -> None:
            await ready.wait()
            log.append((now(), name))

        tasks = [asyncio.create_task(waiter(name)) for name in ("first", "second")]
        asyncio.get_running_loop().call_later(5, ready.set)
        await asyncio.gather(*tasks)
        return log

    assert run_virtual(main()) == [(5.0, "first"), (5.0, "second")]


def test_a_queue_hands_items_over_at_the_times_they_were_put() -> None:
    async def main() -> list[tuple[float, str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        log = []

        async def producer() -> None:
            for item in ["a", "b", "c"]:
                await asyncio.sleep(1)
                await queue.put(item)  # the queue holds one: the last put waits for a get

        async def consumer() -> None:
            for _ in range(3):
                item = await queue.get()
                log.append((now(), item))
                await asyncio.sleep(2.5)

        await asyncio.gather(producer(), consumer())
        return log

    assert run_virtual(main()) == [(1.0, "a"), (3.5, "b"), (6.0, "c")]


# --- executor work holds the clock ---------------------------------------------------------------


def test_a_thread_that_really_sleeps_holds_virtual_time_still() -> None:
    async def main() -> list[tuple[float, str]]:
        log = []

        async def in_thread() -> None:
            await asyncio.to_thread(time.sleep, 0.05)
            log.append((now(), "thread done"))

        async def sleeper() -> None:
            await asyncio.sleep(10)
            log.append((now(), "slept 10"))

        await asyncio.gather(in_thread(), sleeper())
        return log

    log, wall = timed(main())
    assert log == [(0.0, "thread done"), (10.0, "slept 10")]
    assert wall >= 0.05  # the thread really ran


def test_a_cancelled_call_holds_the_clock_until_its_thread_has_ended() -> None:
    # Cancelling the future does not stop the thread: the clock waits for the thread.
    finished = threading.Event()

    def work() -> None:
        time.sleep(0.05)
        finished.set()

    async def main() -> tuple[float, bool]:
        call = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(None, work))
        await asyncio.sleep(0)
        call.cancel()
        await asyncio.sleep(10)
        return now(), finished.is_set()

    assert run_virtual(main()) == (10.0, True)


def test_executor_work_that_never_ends_is_reported_after_the_real_timeout() -> None:
    gate = threading.Event()

    async def main() -> str:
        await asyncio.sleep(3)
        await asyncio.to_thread(gate.wait)
        return "through"

    loop = virtual_loop(real_timeout=0.05)
    task = loop.create_task(main())
    try:
        held = r"asyncio\.to_thread\(Event\.wait\) \(started at virtual time 3\)"
        with pytest.raises(TimeoutError, match=held):
            loop.run_until_complete(task)
        gate.set()  # the thread ends: the loop goes on where it was
        assert loop.run_until_complete(task) == "through"
        assert loop.time() == 3.0
    finally:
        gate.set()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_the_default_executor_shuts_down_with_the_clock_still() -> None:
    # Threads join in another thread: with nothing held, the loop would see a deadlock (3.10,
    # 3.11) or fire the shutdown's 300 s timeout at once, which warns (3.12+; warnings are errors).
    async def main() -> float:
        await asyncio.to_thread(time.sleep, 0.01)
        return now()

    assert run_virtual(main()) == 0.0


# --- deadlocks -----------------------------------------------------------------------------------


def test_a_loop_that_can_never_wake_raises_deadlock_naming_the_stuck_task() -> None:
    async def wait_for_approval(approved: asyncio.Event) -> None:
        await approved.wait()

    async def main() -> None:
        await asyncio.sleep(7)
        waiter = asyncio.create_task(wait_for_approval(asyncio.Event()), name="approval")
        await waiter

    with pytest.raises(Deadlock) as caught:
        run_virtual(main())
    message = str(caught.value)
    assert "can never wake, at virtual time 7" in message
    assert (
        "'approval' test_a_loop_that_can_never_wake_raises_deadlock_naming_the_stuck_task."
        "<locals>.wait_for_approval() suspended at test_virtual_loop.py:"
    ) in message
    assert "in wait_for_approval, awaiting Event.wait()" in message
    assert "main() suspended at test_virtual_loop.py:" in message


def test_a_deadlocked_queue_get_is_reported_too() -> None:
    async def main() -> str:
        queue: asyncio.Queue[str] = asyncio.Queue()
        return await queue.get()

    with pytest.raises(Deadlock, match=r"main\(\) suspended at .*awaiting Queue\.get\(\)"):
        run_virtual(main())


def test_a_registered_socket_may_wake_the_loop_so_it_is_waited_for_for_real() -> None:
    async def main() -> tuple[bytes, float]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            sender = threading.Timer(0.02, theirs.send, (b"x",))
            sender.start()
            try:
                data = await asyncio.get_running_loop().sock_recv(ours, 1)
            finally:
                sender.join()
        return data, now()

    assert run_virtual(main()) == (b"x", 0.0)


def test_a_socket_nothing_arrives_on_is_a_deadlock_after_the_real_timeout() -> None:
    async def main() -> bytes:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            return await asyncio.get_running_loop().sock_recv(ours, 1)

    with pytest.raises(Deadlock, match=r"no I/O arrived on descriptor \d+ \(read\) in 0\.05 s"):
        run_virtual(main(), real_timeout=0.05)


# --- coflow flows on the asyncio backend ---------------------------------------------------------


def test_a_flow_on_the_asyncio_backend_waits_in_virtual_time() -> None:
    log: list[tuple[float, str]] = []

    @coflow.flow(initial_state={"reminders": 0})
    def remind() -> coflow.FlowGenerator:
        for _ in range(3):
            yield wait(600)
            log.append((now(), "remind"))
            yield set_state(lambda s: {"reminders": s["reminders"] + 1})

    async def main() -> Any:
        runner = coflow.start(remind, backend="asyncio")
        return await runner.wait()

    state, wall = timed(main())
    assert state == {"reminders": 3}
    assert log == [(600.0, "remind"), (1200.0, "remind"), (1800.0, "remind")]
    assert wall < 0.5


def test_flow_work_runs_on_the_virtual_loop_async_or_in_its_executor() -> None:
    async def push(state: dict[str, Any]) -> Ok:  # a task on the loop: its sleep is virtual
        await asyncio.sleep(0.3)
        return Ok({**state, "pushed_at": now()})

    def index(state: dict[str, Any]) -> Ok:  # in the loop's executor: it holds the clock
        time.sleep(0.01)
        return Ok({**state, "indexed": True})

    @coflow.flow(initial_state={})
    def publish() -> coflow.FlowGenerator:
        yield wait(1.0)
        yield run(push)
        yield run(index)
        yield set_state(lambda s: {**s, "done_at": now()})

    async def main() -> Any:
        return await coflow.start(publish, backend="asyncio").wait()

    assert run_virtual(main()) == {"pushed_at": 1.3, "indexed": True, "done_at": 1.3}


def test_a_flow_that_can_never_end_is_a_deadlock_naming_the_task_that_waits_for_it() -> None:
    @coflow.flow(initial_state={"approved": False})
    def approval() -> coflow.FlowGenerator:
        yield coflow.wait_until(lambda s: s["approved"])

    async def main() -> Any:
        return await coflow.start(approval, backend="asyncio").wait()

    with pytest.raises(Deadlock) as caught:
        run_virtual(main())
    assert ".<locals>.main() suspended at test_virtual_loop.py:" in str(caught.value)
    assert "in main, awaiting Runner.wait()" in str(caught.value)


# --- the loop and its clock ----------------------------------------------------------------------


def test_a_loop_can_share_a_clock_that_is_also_moved_by_hand() -> None:
    clock = VirtualClock(100.0)
    loop = VirtualEventLoop(clock=clock)
    try:
        log: list[tuple[float, str]] = []
        loop.call_later(10, lambda: log.append((loop.time(), "timer")))
        clock.advance(4)  # between runs, by hand: the timer is still 6 s away
        loop.run_until_complete(asyncio.sleep(1))
        assert log == [] and clock.now() == 105.0
        loop.run_until_complete(asyncio.sleep(20))
        assert log == [(110.0, "timer")] and loop.time() == clock.now() == 125.0
        assert loop.clock is clock
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: VirtualEventLoop(1.0, clock=VirtualClock()), TypeError),
        (lambda: VirtualEventLoop(clock=1.0), TypeError),  # type: ignore[arg-type]
        (lambda: VirtualEventLoop(real_timeout=0), ValueError),
        (lambda: VirtualEventLoop(float("nan")), ValueError),
        (lambda: VirtualClock(5).jump_to(4), ValueError),
        (lambda: VirtualClock().advance(-1), ValueError),
    ],
    ids=["start-and-clock", "not-a-clock", "no-real-timeout", "nan-start", "back", "negative"],
)
def test_bad_arguments_are_refused(make: Callable[[], Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        made = make()
        if isinstance(made, asyncio.AbstractEventLoop):
            made.close()


def test_run_virtual_cleans_up_like_asyncio_run() -> None:
    seen: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(10**6)
        finally:
            seen.append(f"cancelled at {now():g}")

    async def main() -> str:
        left_running = asyncio.create_task(forever())
        await asyncio.sleep(2)
        assert not left_running.done()
        return "done"

    assert run_virtual(main()) == "done"
    assert seen == ["cancelled at 2"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in Python 3.11")
def test_virtual_loop_is_a_loop_factory_for_asyncio_runner() -> None:
    async def main() -> float:
        await asyncio.sleep(90)
        return now()

    with asyncio.Runner(loop_factory=virtual_loop) as runner:
        assert runner.run(main()) == 90.0
        assert runner.run(main()) == 180.0  # one loop, one clock, for the runner's life
        assert isinstance(runner.get_loop(), VirtualEventLoop)


def test_the_loop_says_where_its_clock_is() -> None:
    loop = virtual_loop(12.5)
    try:
        assert repr(loop) == "<VirtualEventLoop time=12.5 running=False closed=False>"
        assert repr(loop.clock) == "<VirtualClock now=12.5>"
    finally:
        loop.close()

