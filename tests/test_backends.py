"""Backend-specific behaviour: what only the real backends (asyncio, gevent, threads) can show.

The behaviour tests run on all four backends through the ``backend`` fixture.
These tests check what those cannot: that work really runs concurrently, that
cancelled work is really interrupted on the backend (a cancelled task, a
killed greenlet, a discarded pool-thread result), that signals from many OS
threads are each applied once and in order, that many flows and many
start/stop cycles leave nothing behind, and how ``start`` picks a backend.

No test sleeps to let things settle: they wait on events or on
``runner.result(timeout=...)``, and time bounds hold on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import backend_params, make_backend, needs_gevent

import coflow
from coflow import (
    FlowFailed,
    FlowStopped,
    Ok,
    get_state,
    parallel,
    race,
    run,
    set_state,
    wait,
    wait_until,
)
from coflow.backends.threads import ThreadBackend
from coflow.backends.virtual import VirtualBackend

FlowGen = Generator[Any, Any, Any]
REAL_BACKENDS = ["asyncio", "gevent", "threads"]
REPO_ROOT = Path(__file__).resolve().parent.parent


def napper(backend_name: str, seconds: float, value: Any) -> Callable[[], Any]:
    """A zero-argument task that takes ``seconds`` the way work does on that backend."""
    if backend_name == "asyncio":

        async def nap_async() -> Any:
            await asyncio.sleep(seconds)
            return value

        return nap_async
    if backend_name == "gevent":
        import gevent

        def nap_greenlet() -> Any:
            gevent.sleep(seconds)
            return value

        return nap_greenlet

    def nap_thread() -> Any:
        time.sleep(seconds)
        return value

    return nap_thread


# --- true concurrency ------------------------------------------------------------------------


@pytest.mark.parametrize("name", backend_params(REAL_BACKENDS))
def test_parallel_tasks_really_run_at_the_same_time(name: str) -> None:
    def main() -> FlowGen:
        results = yield parallel([napper(name, 0.2, index) for index in range(20)])
        yield set_state(lambda state: results)

    with make_backend(name) as backend:
        started = time.monotonic()
        runner = coflow.start(main, initial_state=None, backend=backend)
        final = runner.result(timeout=5)
        elapsed = time.monotonic() - started

    assert final == list(range(20))
    assert 0.19 <= elapsed < 0.8, f"20 tasks of 0.2 s took {elapsed:.3f} s"


# --- a race's loser is really cancelled --------------------------------------------------------


def test_asyncio_race_loser_sees_cancelled_error_and_cleans_up_before_the_race_returns() -> None:
    log: list[Any] = []

    async def loser() -> str:
        try:
            await asyncio.sleep(5)
            log.append("loser finished")
        except asyncio.CancelledError:
            log.append("loser cancelled")
            await asyncio.sleep(0.05)  # cleanup that takes a while
            log.append("loser cleaned up")
            raise
        return "loser"

    def main() -> FlowGen:
        winner = yield race([loser, napper("asyncio", 0.05, "winner")])
        log.append(("race returned", winner))

    with make_backend("asyncio") as backend:
        started = time.monotonic()
        coflow.start(main, initial_state=None, backend=backend).result(timeout=5)
        elapsed = time.monotonic() - started

    assert log == ["loser cancelled", "loser cleaned up", ("race returned", "winner")]
    assert elapsed < 1.0


@needs_gevent
def test_gevent_race_loser_sees_greenlet_exit_and_cleans_up_before_the_race_returns() -> None:
    import gevent
    from greenlet import GreenletExit

    log: list[Any] = []

    def loser() -> str:
        try:
            gevent.sleep(5)
            log.append("loser finished")
        except GreenletExit:
            log.append("loser killed")
            gevent.sleep(0.05)  # cleanup that takes a while
            log.append("loser cleaned up")
            raise
        return "loser"

    def main() -> FlowGen:
        winner = yield race([loser, napper("gevent", 0.05, "winner")])
        log.append(("race returned", winner))

    with make_backend("gevent") as backend:
        started = time.monotonic()
        coflow.start(main, initial_state=None, backend=backend).result(timeout=5)
        elapsed = time.monotonic() - started

    assert log == ["loser killed", "loser cleaned up", ("race returned", "winner")]
    assert elapsed < 1.0


def test_threads_race_loser_late_result_is_discarded(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    loser_returned = threading.Event()

    def slow_update(state: dict[str, Any]) -> Ok[dict[str, Any]]:
        release.wait(5)
        loser_returned.set()
        return Ok({**state, "written_by": "loser"})

    def loser() -> FlowGen:
        yield run(slow_update)
        return "loser"

    def winner() -> FlowGen:
        yield wait(0.05)
        return "winner"

    seen: dict[str, Any] = {}

    def main() -> FlowGen:
        seen["race"] = yield race([loser, winner])
        seen["loser still running when the race returned"] = not loser_returned.is_set()
        release.set()
        # The pool has one thread: this work runs after the loser's call has returned and
        # posted its late result, so the flow goes on only after that result was handled.
        yield run(lambda state: None)
        seen["loser returned"] = loser_returned.is_set()
        seen["state after the late result"] = yield get_state()

    backend = ThreadBackend(max_workers=1)
    try:
        with caplog.at_level(logging.WARNING, logger="coflow"):
            runner = coflow.start(main, initial_state={"written_by": None}, backend=backend)
            final = runner.result(timeout=5)
    finally:
        release.set()
        backend.close()

    assert seen == {
        "race": "winner",
        "loser still running when the race returned": True,
        "loser returned": True,
        "state after the late result": {"written_by": None},
    }
    assert final == {"written_by": None}
    assert runner.status == "done"
    assert caplog.records == []


# --- stop cancels in-flight work -------------------------------------------------------------


def test_asyncio_stop_cancels_the_running_task() -> None:
    started = threading.Event()
    log: list[str] = []

    async def slow(state: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(5)
            log.append("finished")
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    def main() -> FlowGen:
        yield run(slow)

    with make_backend("asyncio") as backend:
        runner = coflow.start(main, initial_state=None, backend=backend)
        assert started.wait(5)
        stopped_at = time.monotonic()
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
        elapsed = time.monotonic() - stopped_at

    assert log == ["cancelled"]
    assert runner.status == "stopped"
    assert elapsed < 1.0


@needs_gevent
def test_gevent_stop_kills_the_running_greenlet() -> None:
    import gevent
    import gevent.event
    from greenlet import GreenletExit

    started = gevent.event.Event()
    log: list[str] = []

    def slow(state: Any) -> None:
        started.set()
        try:
            gevent.sleep(5)
            log.append("finished")
        except GreenletExit:
            log.append("killed")
            raise

    def main() -> FlowGen:
        yield run(slow)

    with make_backend("gevent") as backend:
        runner = coflow.start(main, initial_state=None, backend=backend)
        assert started.wait(5)
        stopped_at = time.monotonic()
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
        elapsed = time.monotonic() - stopped_at

    assert log == ["killed"]
    assert runner.status == "stopped"
    assert elapsed < 1.0


def test_threads_stop_ends_the_flow_while_the_pool_thread_still_runs() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def slow(state: Any) -> None:
        started.set()
        release.wait(5)
        finished.set()

    def main() -> FlowGen:
        yield run(slow)

    with make_backend("threads") as backend:
        try:
            runner = coflow.start(main, initial_state=None, backend=backend)
            assert started.wait(5)
            stopped_at = time.monotonic()
            runner.stop()
            with pytest.raises(FlowStopped):
                runner.result(timeout=5)
            elapsed = time.monotonic() - stopped_at
            still_running = not finished.is_set()
        finally:
            release.set()
        assert finished.wait(5)

    assert still_running, "stop waited for the pool thread"
    assert runner.status == "stopped"
    assert elapsed < 1.0


# --- signals from many OS threads --------------------------------------------------------------

SENDERS = 4
SIGNALS_PER_SENDER = 1000


def append_index(sender: int, index: int, state: dict[int, list[int]]) -> dict[int, list[int]]:
    return {**state, sender: [*state[sender], index]}


def all_signals_in(state: dict[int, list[int]]) -> bool:
    return all(len(indices) == SIGNALS_PER_SENDER for indices in state.values())


@pytest.mark.parametrize("name", backend_params(REAL_BACKENDS))
def test_signals_from_four_os_threads_are_applied_once_each_in_the_order_sent(name: str) -> None:
    def main() -> FlowGen:
        yield wait_until(all_signals_in)

    futures: list[list[Any]] = [[] for _ in range(SENDERS)]

    with make_backend(name) as backend:
        runner = coflow.start(
            main, initial_state={sender: [] for sender in range(SENDERS)}, backend=backend
        )
        together = threading.Barrier(SENDERS)

        def send_all(sender: int) -> None:
            together.wait(5)
            for index in range(SIGNALS_PER_SENDER):
                futures[sender].append(
                    runner.signal(functools.partial(append_index, sender, index))
                )

        senders = [
            threading.Thread(target=send_all, args=(sender,), name=f"sender-{sender}")
            for sender in range(SENDERS)
        ]
        for thread in senders:
            thread.start()
        # Block in result() first: on gevent the hub runs only while this thread waits in it.
        final = runner.result(timeout=30)
        for thread in senders:
            thread.join(5)

    assert final == {sender: list(range(SIGNALS_PER_SENDER)) for sender in range(SENDERS)}
    for sender, sent in enumerate(futures):
        assert len(sent) == SIGNALS_PER_SENDER
        # Each future holds the state just after its own signal: its index is the last one.
        assert [future.result(timeout=5)[sender][-1] for future in sent] == list(
            range(SIGNALS_PER_SENDER)
        )


# --- many flows on one loop ----------------------------------------------------------------------


def test_two_thousand_flows_run_on_one_asyncio_loop() -> None:
    def count(step: int) -> FlowGen:
        yield wait(0.01)
        yield set_state(lambda n: n + step)
        yield wait(0)
        yield set_state(lambda n: n * 10)
        yield wait(0.01)

    async def main() -> tuple[list[Any], set[int], bool]:
        runners = [
            coflow.start(count(index % 7), initial_state=index, name=f"count-{index}")
            for index in range(2000)
        ]
        results = await asyncio.gather(*(runner.wait() for runner in runners))
        backends = {id(runner.backend) for runner in runners}
        only_me = asyncio.all_tasks() == {asyncio.current_task()}
        return list(results), backends, only_me

    results, backends, only_me = asyncio.run(main())

    assert results == [(index + index % 7) * 10 for index in range(2000)]
    assert len(backends) == 1
    assert only_me


# --- start/stop cycles leak nothing ------------------------------------------------------------

CYCLES = 300


def test_asyncio_start_stop_cycles_leave_no_tasks_threads_or_timers() -> None:
    cancelled: list[int] = []

    def blocked_in(cycle: int, started: asyncio.Event) -> Callable[[], FlowGen]:
        async def work(state: Any) -> None:
            started.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(cycle)
                raise

        def in_run() -> FlowGen:
            yield run(work)

        def in_wait() -> FlowGen:
            yield set_state(lambda state: started.set())
            yield wait(5)

        return in_run if cycle % 2 == 0 else in_wait

    async def cycle(index: int) -> None:
        started = asyncio.Event()
        runner = coflow.start(blocked_in(index, started), initial_state=None)
        await asyncio.wait_for(started.wait(), 5)
        runner.stop()
        with pytest.raises(FlowStopped):
            await asyncio.wait_for(runner.wait(), 5)

    async def main() -> dict[str, Any]:
        for index in range(10):
            await cycle(index)
        threads = set(threading.enumerate())
        for index in range(CYCLES):
            await cycle(index)
        loop = asyncio.get_running_loop()
        live_timers = [
            handle for handle in getattr(loop, "_scheduled", []) if not handle.cancelled()
        ]
        return {
            "other tasks": asyncio.all_tasks() - {asyncio.current_task()},
            "new threads": set(threading.enumerate()) - threads,
            "live timers": live_timers,
        }

    leftovers = asyncio.run(main())

    assert leftovers == {"other tasks": set(), "new threads": set(), "live timers": []}
    assert len(cancelled) == 5 + CYCLES // 2


@needs_gevent
def test_gevent_start_stop_cycles_leave_no_greenlets_or_threads() -> None:
    import gevent
    import gevent.event
    from greenlet import greenlet

    work_greenlets: list[weakref.ref[Any]] = []

    def blocked_in(cycle: int, started: Any) -> Callable[[], FlowGen]:
        def work(state: Any) -> None:
            work_greenlets.append(weakref.ref(gevent.getcurrent()))
            started.set()
            gevent.sleep(5)

        def in_run() -> FlowGen:
            yield run(work)

        def in_wait() -> FlowGen:
            yield set_state(lambda state: started.set())
            yield wait(5)

        return in_run if cycle % 2 == 0 else in_wait

    def live_greenlets() -> int:
        return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)

    with make_backend("gevent") as backend:

        def cycle(index: int) -> None:
            started = gevent.event.Event()
            runner = coflow.start(blocked_in(index, started), initial_state=None, backend=backend)
            assert started.wait(5)
            runner.stop()
            with pytest.raises(FlowStopped):
                runner.result(timeout=5)

        for index in range(10):
            cycle(index)
        gc.collect()
        greenlets = live_greenlets()
        threads = set(threading.enumerate())
        for index in range(CYCLES):
            cycle(index)
        gc.collect()

        assert live_greenlets() == greenlets
        assert set(threading.enumerate()) - threads == set()
        assert len(work_greenlets) == 5 + CYCLES // 2
        still_alive = [ref() for ref in work_greenlets if ref() is not None and not ref().dead]
        assert still_alive == []


def test_threads_start_stop_cycles_leave_no_threads() -> None:
    workers = 4
    backend = ThreadBackend(max_workers=workers)
    before = set(threading.enumerate())
    releases: list[threading.Event] = []

    def blocked_in(cycle: int, started: threading.Event) -> Callable[[], FlowGen]:
        release = threading.Event()
        releases.append(release)

        def work(state: Any) -> None:
            started.set()
            release.wait(5)

        def in_run() -> FlowGen:
            yield run(work)

        def in_wait() -> FlowGen:
            yield set_state(lambda state: started.set())
            yield wait(5)

        return in_run if cycle % 2 == 0 else in_wait

    def cycle(index: int) -> None:
        started = threading.Event()
        runner = coflow.start(blocked_in(index, started), initial_state=None, backend=backend)
        assert started.wait(5)
        runner.stop()
        with pytest.raises(FlowStopped):
            runner.result(timeout=5)
        releases[-1].set()  # the pool thread, left to finish by the stop, goes back to the pool

    try:
        # Warm up: fill the pool (all its threads busy at once) and start the scheduler.
        everyone = threading.Barrier(workers)

        def fill_pool() -> FlowGen:
            yield parallel([functools.partial(everyone.wait, 5)] * workers)

        coflow.start(fill_pool, initial_state=None, backend=backend).result(timeout=5)
        for index in range(10):
            cycle(index)
        warm = set(threading.enumerate())
        assert len(warm - before) == 1 + workers  # the scheduler and a full pool

        for index in range(CYCLES):
            cycle(index)

        assert set(threading.enumerate()) - warm == set()
    finally:
        for release in releases:
            release.set()
        backend.close()

    own = set(threading.enumerate()) - before
    for thread in own:
        thread.join(5)
    assert [thread for thread in own if thread.is_alive()] == []


# --- how start picks a backend -----------------------------------------------------------------


def three_steps() -> FlowGen:
    yield wait(0.01)
    yield set_state(lambda n: n + 1)


def test_inside_a_running_loop_start_uses_that_loops_backend_shared_by_its_flows() -> None:
    from coflow.backends.asyncio import AsyncioBackend

    async def main() -> tuple[Any, list[Any]]:
        loop = asyncio.get_running_loop()
        runners = [
            coflow.start(three_steps, initial_state=1),
            coflow.start(three_steps, initial_state=2),
            coflow.start(three_steps, initial_state=3, backend="asyncio"),
        ]
        backend = runners[0].backend
        assert isinstance(backend, AsyncioBackend)
        assert backend.loop is loop
        assert all(runner.backend is backend for runner in runners)
        return backend, list(await asyncio.gather(*(runner.wait() for runner in runners)))

    first_backend, results = asyncio.run(main())
    second_backend, _ = asyncio.run(main())

    assert results == [2, 3, 4]
    assert second_backend is not first_backend  # one backend per loop


def test_outside_a_loop_and_without_gevent_start_uses_the_process_wide_threads_backend() -> None:
    from coflow.backends.threads import default_backend

    first = coflow.start(three_steps, initial_state=1)
    second = coflow.start(three_steps, initial_state=2, backend="threads")

    assert first.backend is default_backend()
    assert second.backend is default_backend()
    assert isinstance(first.backend, ThreadBackend)
    assert (first.result(timeout=5), second.result(timeout=5)) == (2, 3)


def test_the_virtual_name_gives_a_fresh_clock_to_each_start() -> None:
    first = coflow.start(three_steps, initial_state=1, backend="virtual")
    second = coflow.start(three_steps, initial_state=2, backend="virtual")

    assert isinstance(first.backend, VirtualBackend)
    assert isinstance(second.backend, VirtualBackend)
    assert first.backend is not second.backend
    assert (first.result(), second.result()) == (2, 3)


@needs_gevent
def test_the_gevent_name_gives_the_current_hubs_backend() -> None:
    from coflow.backends.gevent import GeventBackend, default_backend

    first = coflow.start(three_steps, initial_state=1, backend="gevent")
    second = coflow.start(three_steps, initial_state=2, backend="gevent")

    assert isinstance(first.backend, GeventBackend)
    assert first.backend is second.backend is default_backend()
    assert (first.result(timeout=5), second.result(timeout=5)) == (2, 3)


def test_an_unknown_backend_name_is_a_value_error_listing_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown backend 'trio'") as raised:
        coflow.start(three_steps, initial_state=0, backend="trio")

    for name in ("asyncio", "gevent", "threads", "virtual"):
        assert repr(name) in str(raised.value)


def test_the_asyncio_name_outside_a_running_loop_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        coflow.start(three_steps, initial_state=0, backend="asyncio")


def test_the_gevent_name_without_gevent_is_an_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in [name for name in sys.modules if name == "gevent" or name.startswith("gevent.")]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "gevent", None)
    monkeypatch.delitem(sys.modules, "coflow.backends.gevent", raising=False)

    with pytest.raises(ImportError, match=re.escape("coflow[gevent]")):
        coflow.start(three_steps, initial_state=0, backend="gevent")


GEVENT_PATCHED_PROGRAM = """
from gevent import monkey

monkey.patch_all()

import functools
import json
import time

import coflow
from coflow import Ok, parallel, run, set_state, wait


def nap(seconds):
    time.sleep(seconds)  # patched: only this greenlet sleeps
    return seconds


def mark_ran(state):
    return Ok({**state, "ran": True})


def main():
    yield wait(0.01)
    yield run(mark_ran)
    naps = yield parallel([functools.partial(nap, 0.2)] * 10)
    yield set_state(lambda state: {**state, "naps": naps})
    yield wait(0.01)


started = time.monotonic()
runner = coflow.start(main, initial_state={"ran": False})
final = runner.result(timeout=10)
print(json.dumps({
    "backend": type(runner.backend).__name__,
    "final": final,
    "elapsed": time.monotonic() - started,
}))
"""


@needs_gevent
def test_under_gevent_monkey_patching_start_uses_gevent_and_runs_work_in_greenlets() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GEVENT_PATCHED_PROGRAM)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["backend"] == "GeventBackend"
    assert report["final"] == {"ran": True, "naps": [0.2] * 10}
    assert report["elapsed"] < 0.8  # ten patched 0.2 s sleeps ran at the same time


# --- coroutine functions where nothing can await them ------------------------------------------


@pytest.mark.parametrize("name", backend_params(["gevent", "threads"]))
def test_a_coroutine_function_given_to_run_is_a_type_error_naming_the_backend(name: str) -> None:
    async def fetch(state: Any) -> str:
        return "never"

    caught: list[BaseException] = []

    def main() -> FlowGen:
        try:
            yield run(fetch)
        except TypeError as error:
            caught.append(error)
        yield set_state(lambda state: "went on")

    with make_backend(name) as backend:
        final = coflow.start(main, initial_state=None, backend=backend).result(timeout=5)

    assert final == "went on"
    assert len(caught) == 1
    assert f"{name} backend" in str(caught[0])
    assert "fetch" in str(caught[0])


# --- asyncio specifics -----------------------------------------------------------------------


def test_asyncio_a_blocking_function_runs_off_the_loop_while_the_loop_keeps_ticking() -> None:
    ticks = [0]
    seen: dict[str, Any] = {}

    def blocking(state: Any) -> str:
        seen["thread"] = threading.get_ident()
        before = ticks[0]
        time.sleep(0.05)
        seen["ticks while blocking"] = ticks[0] - before
        return "slept"

    def main() -> FlowGen:
        seen["result"] = yield run(blocking)

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0.001)

    async def main_async() -> None:
        seen["loop thread"] = threading.get_ident()
        ticking = asyncio.ensure_future(ticker())
        try:
            await coflow.start(main, initial_state=None).wait()
        finally:
            ticking.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ticking

    asyncio.run(main_async())

    assert seen["result"] == "slept"
    assert seen["thread"] != seen["loop thread"]
    assert seen["ticks while blocking"] > 0


def test_asyncio_an_awaitable_returned_by_a_plain_function_is_awaited_on_the_loop() -> None:
    seen: dict[str, Any] = {}

    async def finish(state: dict[str, Any]) -> Ok[dict[str, Any]]:
        seen["on the loop"] = asyncio.get_running_loop() is seen["loop"]
        await asyncio.sleep(0.01)
        return Ok({**state, "done": True})

    def plain(state: dict[str, Any]) -> Coroutine[Any, Any, Ok[dict[str, Any]]]:
        assert not inspect.iscoroutinefunction(plain)
        return finish(state)

    def main() -> FlowGen:
        seen["yield gave"] = yield run(plain)

    async def main_async() -> Any:
        seen["loop"] = asyncio.get_running_loop()
        return await coflow.start(main, initial_state={"done": False}).wait()

    assert asyncio.run(main_async()) == {"done": True}
    assert seen["on the loop"] is True
    assert seen["yield gave"] == {"done": True}


def test_asyncio_result_on_the_loops_own_thread_is_a_runtime_error_pointing_to_wait() -> None:
    async def main_async() -> Any:
        runner = coflow.start(three_steps, initial_state=1)
        with pytest.raises(RuntimeError, match=re.escape("await runner.wait()")):
            runner.result(timeout=5)
        return await runner.wait()

    assert asyncio.run(main_async()) == 2


# --- threads specifics -----------------------------------------------------------------------


def test_threads_result_inside_a_flow_callback_raises_instead_of_hanging() -> None:
    backend = ThreadBackend()
    runners: list[coflow.Runner] = []

    def wait_for_myself(state: dict[str, Any]) -> Any:
        return runners[0].result(timeout=None)

    def main() -> FlowGen:
        yield wait_until(lambda state: state["go"])
        yield set_state(wait_for_myself)

    runner = coflow.start(main, initial_state={"go": False}, backend=backend)
    runners.append(runner)
    runner.signal(lambda state: {**state, "go": True})

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    # Closed only once the scheduler is known not to hang (close() joins its thread).
    backend.close()

    assert isinstance(failed.value.__cause__, RuntimeError)
    assert "scheduler thread" in str(failed.value.__cause__)
    assert runner.status == "failed"


def test_threads_close_stops_the_scheduler_thread() -> None:
    before = set(threading.enumerate())
    backend = ThreadBackend()
    assert coflow.start(three_steps, initial_state=1, backend=backend).result(timeout=5) == 2
    schedulers = [
        thread
        for thread in set(threading.enumerate()) - before
        if thread.name == "coflow-scheduler"
    ]
    assert len(schedulers) == 1
    assert schedulers[0].is_alive()

    backend.close()

    assert not schedulers[0].is_alive()


def test_threads_starting_a_flow_on_a_closed_backend_is_a_runtime_error() -> None:
    backend = ThreadBackend()
    assert coflow.start(three_steps, initial_state=1, backend=backend).result(timeout=5) == 2
    backend.close()

    with pytest.raises(RuntimeError, match="is closed"):
        coflow.start(three_steps, initial_state=1, backend=backend)
