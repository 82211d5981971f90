"""Faults where supervision, child refs and timers meet (SPEC §6 and §9).

* A supervised parent that fails and is restarted keeps its children started
  with a ``ref`` running: the restarted run finds them again, so a side effect
  (an e-mail) happens once.  Children without a ref are stopped; giving up
  stops them all.
* On the virtual clock, a flow that fails at once, restarted at one instant,
  counts toward ``max_steps`` instead of holding ``advance(0)`` forever.
* A finished runner and its state are released once the caller drops them,
  even while a timer it cancelled waits on the heap.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest

import coflow
from coflow import (
    FlowException,
    FlowFailed,
    FlowGenerator,
    FlowStopped,
    Supervisor,
    call,
    race,
    receive,
    set_state,
    spawn,
    wait,
    wait_until,
)
from coflow.backends.threads import ThreadBackend
from coflow.backends.virtual import VirtualBackend

# Refs across a supervisor's restart


def until_ended(child: coflow.Runner) -> FlowGenerator:
    """Poll: a parent's state does not change when its child ends, so wait_until cannot see it."""
    for _ in range(1000):
        if child.status != "running":
            return
        yield wait(0.005)
    raise AssertionError(f"{child!r} did not end")


class Mailer:
    """A child flow that sends one e-mail per run, then holds until it gets a message."""

    def __init__(self) -> None:
        self.sends: list[str] = []

    def flow(self) -> FlowGenerator:
        self.sends.append("welcome")
        reply = yield receive()
        yield set_state(lambda s: reply)


def test_a_restarted_parent_spawns_the_same_running_child_for_a_ref(coflow_backend: Any) -> None:
    mailer = Mailer()
    spawned: list[coflow.Runner] = []
    status_at_restart: list[str] = []

    def parent() -> FlowGenerator:
        if spawned:
            status_at_restart.append(spawned[0].status)
        child = yield spawn(mailer.flow, ref="mail")
        spawned.append(child)
        if len(spawned) == 1:
            yield wait(0.01)  # the child has sent its e-mail by now
            raise RuntimeError("the order book is down")
        child.send("sent")
        yield from until_ended(child)

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=1))
    assert runner.result(timeout=5) is None
    assert runner.restarts == 1
    first, second = spawned
    assert second is first
    assert status_at_restart == ["running"]
    assert mailer.sends == ["welcome"]  # one e-mail, not two
    assert first.result(timeout=5) == "sent"
    assert runner.children() == [first]


def test_a_restarted_parent_calls_a_running_child_by_its_ref_and_waits_for_it(
    coflow_backend: Any,
) -> None:
    mailer = Mailer()
    results: list[Any] = []

    def parent() -> FlowGenerator:
        if not results:
            results.append("first run")
            child = yield spawn(mailer.flow, ref="mail")
            yield wait(0.01)
            child.send("delivered")  # the child ends after the parent's failure
            raise RuntimeError("fails with its mailer running")
        results.append((yield call(mailer.flow, ref="mail")))

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=1))
    assert runner.result(timeout=5) is None
    assert results == ["first run", "delivered"]
    assert mailer.sends == ["welcome"]
    [child] = runner.children()
    assert child.status == "done"


def test_a_restarted_parent_calls_a_finished_child_by_its_ref_and_gets_its_result(
    coflow_backend: Any,
) -> None:
    sends: list[str] = []
    results: list[Any] = []

    def mail() -> FlowGenerator:
        sends.append("receipt")
        yield set_state(lambda s: "sent")

    def parent() -> FlowGenerator:
        child = yield spawn(mail, ref="receipt")
        if not results:
            results.append("first run")
            yield from until_ended(child)
            raise RuntimeError("fails after its mailer finished")
        results.append((yield call(mail, ref="receipt")))

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=1))
    assert runner.result(timeout=5) is None
    assert results == ["first run", "sent"]
    assert sends == ["receipt"]


def test_a_restart_stops_the_children_without_a_ref_first(coflow_backend: Any) -> None:
    log: list[str] = []
    spawned: list[coflow.Runner] = []

    def holder(name: str) -> Any:
        def hold() -> FlowGenerator:
            try:
                yield receive()
            finally:
                log.append(f"{name} ended")

        return hold

    keep_mailing, scratch = holder("mailer"), holder("scratch")

    def parent() -> FlowGenerator:
        log.append("run")
        spawned.append((yield spawn(keep_mailing, ref="mail")))
        if len(spawned) == 1:
            spawned.append((yield spawn(scratch)))
            yield wait(0.01)
            raise RuntimeError("fails with both children running")
        yield receive()

    def restarted() -> FlowGenerator:
        while len(spawned) < 3:
            yield wait(0.005)

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=1))
    coflow.start(coflow.timeout(restarted, 5), backend=coflow_backend, supervisor=None).result(
        timeout=6
    )
    mailer, scratch_child, again = spawned
    assert again is mailer
    assert mailer.status == "running"
    # The child without a ref ended before the restarted run began.
    assert log == ["run", "scratch ended", "run"]
    assert scratch_child.status == "stopped"
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    # Stopping the parent stops every child, the ref'd one too.
    assert mailer.status == "stopped"
    assert log[-1] == "mailer ended"


def test_giving_up_stops_every_child_the_refd_ones_too(coflow_backend: Any) -> None:
    mailer = Mailer()
    spawned: list[coflow.Runner] = []

    def parent() -> FlowGenerator:
        spawned.append((yield spawn(mailer.flow, ref="mail")))
        yield wait(0.01)
        raise RuntimeError(f"run {len(spawned)} fails")

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=2))
    with pytest.raises(FlowFailed, match="run 3 fails"):
        runner.result(timeout=5)
    assert runner.restarts == 2
    assert len(set(map(id, spawned))) == 1  # the same child through every run
    assert spawned[0].status == "stopped"  # stopped before the parent reported failed
    assert mailer.sends == ["welcome"]


def test_a_child_stopped_by_someone_else_is_started_anew_after_a_restart(
    coflow_backend: Any,
) -> None:
    mailer = Mailer()
    spawned: list[coflow.Runner] = []

    def parent() -> FlowGenerator:
        child = yield spawn(mailer.flow, ref="mail")
        spawned.append(child)
        if len(spawned) == 1:
            child.stop()
            yield from until_ended(child)
            raise RuntimeError("fails after its mailer was stopped")
        child.send("sent")

    runner = coflow.start(parent, backend=coflow_backend, supervisor=Supervisor(max_restarts=1))
    assert runner.result(timeout=5) is None
    first, second = spawned
    assert second is not first
    assert first.status == "stopped"
    assert second.result(timeout=5) == "sent"
    assert mailer.sends == ["welcome", "welcome"]  # the stopped one gave no result


# Restarts at one instant on the virtual clock


def fails_at_once() -> FlowGenerator:
    raise RuntimeError("fails at once")
    yield  # pragma: no cover - a generator that never yields


@pytest.mark.parametrize("drive", ["advance", "run", "run_until_idle", "result"])
def test_restarts_at_one_instant_count_toward_max_steps(drive: str) -> None:
    backend = VirtualBackend(max_steps=1000)
    sup = Supervisor(max_restarts=10**9, max_seconds=1.0)
    runner = coflow.start(fails_at_once, backend=backend, supervisor=sup, name="eager")
    drivers = {
        "advance": lambda: backend.advance(0),
        "run": backend.run,
        "run_until_idle": backend.run_until_idle,
        "result": runner.result,
    }
    with pytest.raises(FlowException, match="'eager' restarted") as raised:
        drivers[drive]()
    assert not isinstance(raised.value, FlowFailed)  # the clock's limit, not the flow's end
    assert "max_steps=1000" in str(raised.value)
    assert backend.now() == 0.0
    assert runner.status == "running"  # held, like a flow that never blocks
    assert runner.restarts == 11  # 11 x 100 steps > 1000
    # The restart already posted runs and fails; a stop asked meanwhile allows no more.
    runner.stop()
    backend.run_until_idle()
    assert runner.status == "failed"
    assert runner.restarts == 11


def test_a_called_child_that_never_blocks_holds_the_clock_not_its_parent() -> None:
    # The child is driven inside its parent's call step: the limit still reaches the driving
    # call, instead of failing the parent's step.
    def busy() -> FlowGenerator:
        while True:
            yield set_state(lambda s: (s or 0) + 1)

    def parent() -> FlowGenerator:
        yield call(busy)

    backend = VirtualBackend(max_steps=100)
    runner = coflow.start(parent, backend=backend, supervisor=None)
    with pytest.raises(FlowException, match="parent > busy ran 500 steps") as raised:
        runner.result()
    assert not isinstance(raised.value, FlowFailed)
    assert runner.status == "running"


def test_a_few_restarts_at_one_instant_stay_within_max_steps() -> None:
    backend = VirtualBackend(max_steps=1000)
    runner = coflow.start(
        fails_at_once, backend=backend, supervisor=Supervisor(max_restarts=3), name="eager"
    )
    with pytest.raises(FlowFailed, match="fails at once"):
        runner.result()
    assert runner.restarts == 3


def test_restarts_at_later_instants_count_afresh() -> None:
    backend = VirtualBackend(max_steps=1000)
    runs: list[float] = []

    def fails_after_a_wait() -> FlowGenerator:
        runs.append(backend.now())
        yield wait(1.0)
        raise RuntimeError("fails each second")

    sup = Supervisor(max_restarts=50, max_seconds=1000.0)
    runner = coflow.start(fails_after_a_wait, backend=backend, supervisor=sup)
    with pytest.raises(FlowFailed, match="fails each second"):
        runner.result()
    assert runner.restarts == 50
    assert runs == [float(second) for second in range(51)]


# A finished runner is released


class State:
    """A large state object that can be watched by a weak reference."""

    def __init__(self) -> None:
        self.payload = bytearray(1 << 16)


def released_after(backend: Any, body: Any, finish: Any = None) -> None:
    """Run ``body`` to its end; then neither its runner nor its state may be alive."""
    state = State()
    runner = coflow.start(body, initial_state=state, backend=backend, supervisor=None)
    if finish is not None:
        finish(runner)
    runner.result(timeout=5)
    # A second flow to the end: the scheduler has moved on from the first one's callbacks.
    coflow.start(wait(0), backend=backend, supervisor=None).result(timeout=5)
    runner_ref, state_ref = weakref.ref(runner), weakref.ref(state)
    del runner, state
    gc.collect()
    assert runner_ref() is None
    assert state_ref() is None


def test_a_runner_whose_race_loser_waited_long_is_released(coflow_backend: Any) -> None:
    released_after(coflow_backend, race([wait(100), wait(0.01)]))


def test_a_runner_whose_wait_until_timeout_was_cancelled_is_released(coflow_backend: Any) -> None:
    def ready() -> FlowGenerator:
        yield wait_until(lambda s: getattr(s, "ready", False), timeout=100)

    def mark_ready(runner: coflow.Runner) -> None:
        def ready_state(s: State) -> State:
            s.ready = True  # type: ignore[attr-defined]
            return s

        runner.signal(ready_state)

    released_after(coflow_backend, ready, mark_ready)


def test_a_runner_whose_timeout_ended_early_is_released(coflow_backend: Any) -> None:
    released_after(coflow_backend, coflow.timeout(wait(0.01), 100))


def test_an_idle_threads_backend_keeps_no_finished_runner() -> None:
    # Its scheduler thread, idle, must not hold the last item posted to it: here the
    # work's outcome, which holds the runner and so its state.
    backend = ThreadBackend()
    try:
        state = State()
        runner = coflow.start(
            coflow.run(lambda s: time.sleep(0.05)), initial_state=state, backend=backend
        )
        runner.result(timeout=5)  # asked before the work ends: its outcome is the last post
        runner_ref, state_released = weakref.ref(runner), threading.Event()
        weakref.finalize(state, state_released.set)
        del runner, state
        for _ in range(500):  # the scheduler thread may still be in the callback that ended it
            gc.collect()
            if state_released.wait(0.01):
                break
        assert runner_ref() is None
        assert state_released.is_set()
    finally:
        backend.close()
