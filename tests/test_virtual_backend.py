"""The virtual clock's own API: deterministic time, explicit driving, Deadlock and max_steps.

These tests construct ``VirtualBackend`` themselves: they assert what only a
virtual clock can promise (exact times, nothing happening between calls,
identical runs for identical seeds).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import coflow
from coflow import (
    Deadlock,
    FlowException,
    FlowGenerator,
    FlowStopped,
    RetriesExhausted,
    receive,
    run,
    set_state,
    wait,
    wait_until,
)
from coflow.backends.virtual import VirtualBackend

Log = list[tuple[float, str]]


def logging_flow(backend: VirtualBackend, log: Log, label: str, *delays: float) -> coflow.Flow:
    """A flow that logs ``label`` at start and after each delay."""

    @coflow.flow(initial_state=0, name=label)
    def logger() -> FlowGenerator:
        log.append((backend.now(), label))
        for delay in delays:
            yield wait(delay)
            log.append((backend.now(), label))

    return logger


# The clock


def test_now_starts_at_start_and_advance_moves_it() -> None:
    backend = VirtualBackend(start=100.0)
    assert backend.now() == 100.0
    backend.advance(1.5)
    assert backend.now() == 101.5
    backend.run_until_idle()
    assert backend.now() == 101.5


def test_advance_runs_exactly_what_is_due() -> None:
    backend = VirtualBackend()
    log: Log = []
    runner = coflow.start(logging_flow(backend, log, "tick", 1.0, 2.0), backend=backend)
    backend.advance(0.5)
    assert log == [(0.0, "tick")]
    backend.advance(0.5)
    assert log == [(0.0, "tick"), (1.0, "tick")]
    backend.advance(1.5)
    assert log == [(0.0, "tick"), (1.0, "tick")]
    assert backend.now() == 2.5
    backend.advance(0.5)
    assert log == [(0.0, "tick"), (1.0, "tick"), (3.0, "tick")]
    assert runner.status == "done"


def test_run_until_idle_runs_ready_work_without_passing_time() -> None:
    backend = VirtualBackend()
    log: Log = []
    coflow.start(logging_flow(backend, log, "tick", 1.0), backend=backend)
    backend.run_until_idle()
    assert log == [(0.0, "tick")]
    assert backend.now() == 0.0


def test_run_until_stops_at_until_and_run_jumps_to_the_last_timer() -> None:
    backend = VirtualBackend()
    log: Log = []
    runner = coflow.start(logging_flow(backend, log, "tick", 1.0, 2.0), backend=backend)
    backend.run(until=2.5)
    assert backend.now() == 2.5
    assert log == [(0.0, "tick"), (1.0, "tick")]
    backend.run()
    assert backend.now() == 3.0
    assert log == [(0.0, "tick"), (1.0, "tick"), (3.0, "tick")]
    assert runner.status == "done"


def test_timers_due_at_the_same_time_fire_in_the_order_they_were_set() -> None:
    backend = VirtualBackend()
    log: Log = []
    # Due at t=2: "late" sets its timer at t=1, "early" and "middle" at t=0.
    coflow.start(logging_flow(backend, log, "late", 1.0, 1.0), backend=backend)
    coflow.start(logging_flow(backend, log, "early", 2.0), backend=backend)
    coflow.start(logging_flow(backend, log, "middle", 2.0), backend=backend)
    backend.run()
    assert [entry for entry in log if entry[0] == 2.0] == [
        (2.0, "early"),
        (2.0, "middle"),
        (2.0, "late"),
    ]


def test_zero_delay_wait_runs_after_work_already_ready() -> None:
    backend = VirtualBackend()
    labels: list[str] = []

    @coflow.flow(initial_state=0)
    def zero() -> FlowGenerator:
        labels.append("zero: before")
        yield wait(0)
        labels.append("zero: after")

    @coflow.flow(initial_state=0)
    def ready() -> FlowGenerator:
        labels.append("ready")
        yield set_state(lambda s: s + 1)

    coflow.start(zero, backend=backend)
    coflow.start(ready, backend=backend)
    backend.run_until_idle()
    assert labels == ["zero: before", "ready", "zero: after"]
    assert backend.now() == 0.0


# Nothing happens between calls


def test_start_takes_effect_at_the_next_drive() -> None:
    backend = VirtualBackend()
    log: Log = []
    runner = coflow.start(logging_flow(backend, log, "tick"), backend=backend)
    assert log == []
    assert runner.status == "running"
    backend.run_until_idle()
    assert log == [(0.0, "tick")]
    assert runner.status == "done"


def test_signal_takes_effect_at_the_next_drive() -> None:
    backend = VirtualBackend()

    @coflow.flow(initial_state={"go": False})
    def waiter() -> FlowGenerator:
        yield wait_until(lambda s: s["go"])

    runner = coflow.start(waiter, backend=backend)
    backend.run_until_idle()
    future = runner.signal(lambda s: {"go": True})
    assert not future.done()
    assert runner.get_state() == {"go": False}
    backend.advance(0)
    assert future.result(timeout=0) == {"go": True}
    assert runner.get_state() == {"go": True}
    assert runner.status == "done"


def test_send_takes_effect_at_the_next_drive() -> None:
    backend = VirtualBackend()

    @coflow.flow(initial_state=None)
    def inbox() -> FlowGenerator:
        message = yield receive()
        yield set_state(lambda s: message)

    runner = coflow.start(inbox, backend=backend)
    backend.run_until_idle()
    runner.send("hello")
    assert runner.get_state() is None
    assert runner.status == "running"
    backend.run(until=1.0)
    assert runner.get_state() == "hello"
    assert runner.status == "done"


def test_stop_takes_effect_at_the_next_drive() -> None:
    backend = VirtualBackend()
    cleanups: list[str] = []

    @coflow.flow(initial_state=0)
    def forever() -> FlowGenerator:
        try:
            yield wait_until(lambda s: False)
        finally:
            cleanups.append("cleanup")

    runner = coflow.start(forever, backend=backend)
    backend.run_until_idle()
    runner.stop()
    assert cleanups == []
    assert runner.status == "running"
    backend.run_until_idle()
    assert cleanups == ["cleanup"]
    assert runner.status == "stopped"
    with pytest.raises(FlowStopped):
        runner.result()


# Determinism


def jittery_run(seed: int) -> Log:
    """A flow with jittered retries and timed signals; returns its event log."""
    backend = VirtualBackend(seed=seed)
    log: Log = []

    def flaky(state: Any) -> Any:
        log.append((backend.now(), f"attempt {state}"))
        raise ConnectionError("still down")

    @coflow.flow(initial_state=0)
    def retrying() -> FlowGenerator:
        try:
            yield run(flaky, retries=6, backoff="exponential", base_delay=0.1, jitter=True)
        except RetriesExhausted:
            log.append((backend.now(), "gave up"))
        yield wait_until(lambda s: s >= 2)
        log.append((backend.now(), "released"))

    events: list[Any] = []
    runner = coflow.start(
        retrying, backend=backend, notify=lambda e: events.append((backend.now(), e.state))
    )

    @coflow.flow(initial_state=None)
    def signaller() -> FlowGenerator:
        for _ in range(2):
            yield wait(1.3)
            runner.signal(lambda s: s + 1)

    coflow.start(signaller, backend=backend)
    runner.result()
    return log + [(t, f"event {state}") for t, state in events]


def test_identical_runs_give_identical_event_logs() -> None:
    first = jittery_run(seed=7)
    second = jittery_run(seed=7)
    assert first == second
    attempts = [t for t, label in first if label.startswith("attempt")]
    assert len(attempts) == 7
    # Jitter really moved the retries off the plain exponential schedule.
    plain = [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3]
    assert attempts != pytest.approx(plain)
    assert attempts == sorted(attempts)
    # Each delay is drawn from [0, nominal delay].
    for k in range(1, 7):
        assert 0.0 <= attempts[k] - attempts[k - 1] <= 0.1 * 2 ** (k - 1) + 1e-9


def test_a_different_seed_gives_a_different_jitter_schedule() -> None:
    assert jittery_run(seed=7) != jittery_run(seed=8)


def test_default_seed_is_reproducible() -> None:
    def default_run() -> list[float]:
        backend = VirtualBackend()
        times: list[float] = []

        def flaky(state: Any) -> Any:
            times.append(backend.now())
            raise ConnectionError

        @coflow.flow(initial_state=0)
        def retrying() -> FlowGenerator:
            try:
                yield run(flaky, retries=4, base_delay=1.0, jitter=True)
            except RetriesExhausted:
                pass

        coflow.start(retrying, backend=backend).result()
        return times

    assert default_run() == default_run()


# result() drives the clock


def test_result_drives_the_clock_only_until_the_runner_ends() -> None:
    backend = VirtualBackend()
    log: Log = []
    later = coflow.start(logging_flow(backend, log, "later", 10.0), backend=backend)
    sooner = coflow.start(logging_flow(backend, log, "sooner", 5.0), backend=backend)
    assert sooner.result() == 0
    assert backend.now() == 5.0
    assert later.status == "running"
    assert log == [(0.0, "later"), (0.0, "sooner"), (5.0, "sooner")]
    later.result()
    assert backend.now() == 10.0


def test_deadlock_when_nothing_can_satisfy_wait_until() -> None:
    backend = VirtualBackend()

    @coflow.flow(initial_state=0, name="hopeless")
    def hopeless() -> FlowGenerator:
        yield wait_until(lambda s: s > 0)

    runner = coflow.start(hopeless, backend=backend)
    with pytest.raises(Deadlock):
        runner.result()
    assert issubclass(Deadlock, FlowException)


def test_deadlock_when_nothing_can_be_received() -> None:
    backend = VirtualBackend()

    @coflow.flow(initial_state=None, name="lonely")
    def lonely() -> FlowGenerator:
        yield wait(1.0)
        yield receive()

    runner = coflow.start(lonely, backend=backend)
    with pytest.raises(Deadlock):
        runner.result()
    assert backend.now() == 1.0


def test_no_deadlock_while_a_timer_can_still_wake_the_flow() -> None:
    backend = VirtualBackend()

    @coflow.flow(initial_state=0)
    def patient() -> FlowGenerator:
        yield wait_until(lambda s: s > 0)

    runner = coflow.start(patient, backend=backend)

    @coflow.flow(initial_state=None)
    def waker() -> FlowGenerator:
        yield wait(2.0)
        runner.signal(lambda s: s + 1)

    coflow.start(waker, backend=backend)
    assert runner.result() == 1
    assert backend.now() == 2.0


# max_steps


def spinner_flow() -> coflow.Flow:
    @coflow.flow(initial_state=0, name="spinner")
    def spinner() -> FlowGenerator:
        while True:
            yield set_state(lambda s: s + 1)

    return spinner


DRIVERS: dict[str, Callable[[VirtualBackend, coflow.Runner], Any]] = {
    "advance": lambda backend, runner: backend.advance(1.0),
    "run": lambda backend, runner: backend.run(),
    "run_until_idle": lambda backend, runner: backend.run_until_idle(),
    "result": lambda backend, runner: runner.result(),
}


@pytest.mark.parametrize("drive", list(DRIVERS))
def test_a_flow_that_never_blocks_exceeds_max_steps(drive: str) -> None:
    backend = VirtualBackend(max_steps=1000)
    runner = coflow.start(spinner_flow(), backend=backend)
    with pytest.raises(FlowException, match="spinner"):
        DRIVERS[drive](backend, runner)
    assert backend.now() == 0.0


def test_steps_below_max_steps_at_each_instant_are_fine() -> None:
    backend = VirtualBackend(max_steps=1000)

    @coflow.flow(initial_state=0)
    def bursts() -> FlowGenerator:
        for _ in range(3):
            for _ in range(800):
                yield set_state(lambda s: s + 1)
            yield wait(1.0)

    runner = coflow.start(bursts, backend=backend)
    assert runner.result() == 2400
    assert backend.now() == 3.0


# Selecting the virtual backend by name


def test_start_with_backend_name_virtual_uses_a_fresh_virtual_clock() -> None:
    labels: list[str] = []

    @coflow.flow(initial_state=0)
    def slow() -> FlowGenerator:
        yield wait(3600)
        labels.append("slow done")
        yield set_state(lambda s: s + 1)

    @coflow.flow(initial_state=0)
    def other() -> FlowGenerator:
        labels.append("other ran")
        yield wait(1.0)

    runner = coflow.start(slow, backend="virtual")
    bystander = coflow.start(other, backend="virtual")
    assert runner.status == "running"
    assert runner.result() == 1  # an hour of virtual time, at once
    # Each name lookup made its own backend: driving one did not run the other.
    assert labels == ["slow done"]
    assert bystander.status == "running"
    assert bystander.result() == 0
    assert labels == ["slow done", "other ran"]


def test_work_posted_from_many_threads_at_once_keeps_each_threads_order() -> None:
    """Posting is one atomic operation: threads switching mid-post cannot mix up the queue."""
    backend = VirtualBackend()

    def blocked() -> Iterator[Any]:
        yield coflow.wait_until(lambda s: False)

    runner = coflow.start(blocked, backend=backend, initial_state=0)
    backend.run_until_idle()
    applied: list[tuple[int, int]] = []

    def mark(thread: int, index: int) -> Callable[[int], int]:
        def apply(state: int) -> int:
            applied.append((thread, index))
            return state + 1

        return apply

    def sender(thread: int) -> None:
        for index in range(2_000):
            runner.signal(mark(thread, index))

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # make the threads switch as often as they can
    try:
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(switch_interval)
    backend.run_until_idle()
    assert runner.get_state() == 8_000
    for thread in range(4):
        assert [i for t, i in applied if t == thread] == list(range(2_000))


def _slotted(count: int, weakref: bool = False) -> object:
    """A plain object of ``count`` slots (and a weak reference slot): the size to compare with."""
    slots = tuple(f"slot{index}" for index in range(count)) + (("__weakref__",) if weakref else ())
    return type("Slotted", (), {"__slots__": slots})()


@pytest.mark.plain_step_loop
def test_a_flow_blocked_in_wait_until_holds_a_runner_and_a_task_and_nothing_else() -> None:
    """What keeps 100,000 blocked flows small (docs/performance.md): no links, no frame stack."""
    backend = VirtualBackend()

    def blocked() -> Iterator[Any]:
        yield wait_until(lambda state: state > 0)

    runner = coflow.start(blocked, initial_state=0, backend=backend)
    backend.run_until_idle()
    task = runner.root
    assert task is not None and type(task.waiting).__name__ == "WaitUntil"
    assert runner._links is None  # made only for what few runners need: children, a name, ...
    assert task.stack is None  # made only for a sub-flow or a cancellation
    # A runner of ten slots (one of them its weak reference) and a task of six: no bigger than
    # plain objects of that many slots, whatever this interpreter's object header is.
    assert sys.getsizeof(runner) <= sys.getsizeof(_slotted(9, weakref=True))
    assert sys.getsizeof(task) <= sys.getsizeof(_slotted(6))
    runner.stop()
    backend.run_until_idle()
    assert runner.status == "stopped"


def test_cancelled_timers_do_not_pile_up_on_the_heap() -> None:
    """Each receive sets an hour-long timeout that is cancelled when a message comes."""
    backend = VirtualBackend()
    received: list[int] = []

    def listener() -> Iterator[Any]:
        while True:
            received.append((yield coflow.receive(timeout=3600.0)))

    runner = coflow.start(listener, backend=backend)
    backend.run_until_idle()
    for message in range(5_000):
        runner.send(message)
        backend.run_until_idle()
    assert received == list(range(5_000))
    assert "timers=" in repr(backend)
    pending = int(repr(backend).split("timers=")[1].rstrip(">"))
    assert pending < 1_000  # without compaction: 5,000 cancelled timers would still be there
    # Nor do the deadlines they left behind (memory the timer count does not show).
    assert len(backend._timers.deadlines) < 1_000
