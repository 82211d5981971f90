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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import EXTERNAL_BACKENDS, REAL_BACKENDS, backend_params, needs_gevent

import coflow
from coflow import (
    FlowFailed,
    FlowGenerator,
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
from coflow.pytest_plugin import open_backend

INTERRUPTING_BACKENDS = ["asyncio", "gevent"]  # they can interrupt work that is running
#: The backends whose work runs on threads, which a stop leaves to finish.
POOL_BACKENDS = ["threads", *(name for name in EXTERNAL_BACKENDS if name in REAL_BACKENDS)]


# --- how work is written on each backend ---------------------------------------------------------


class Work:
    """Slow work, and what became of it: it runs until ``release`` is set, 5 s at most.

    It logs ``"finished"`` when it returns; interrupted, it logs the error it saw,
    then, given ``cleanup`` seconds, cleans up for that long and logs ``"cleaned up"``.
    """

    def __init__(self, kit: Kit, cleanup: float = 0.0) -> None:
        self.cleanup = cleanup
        self.started = kit.event()
        self.release = kit.event()
        self.finished = threading.Event()  # set once the work has returned or raised
        self.log: list[Any] = []
        self.fn = kit.slow(self)


def no_warm_up(backend: Any) -> int:
    return 0


@dataclass(frozen=True)
class Kit:
    """What differs between the real backends, for the tests written once for all of them."""

    sleep: Callable[[float], Any] | None  # how work sleeps, as a plain function; None: async
    fate: str  # what slow work logs once its flow is stopped: the error it sees, or "finished"
    event: Callable[[], Any]  # an event that this thread can wait on while the backend runs
    holds: Callable[[Any], dict[str, Any]]  # what the backend holds, besides threads
    #: Starts every thread the backend keeps; how many, or None if it cannot tell.
    warm_up: Callable[[Any], int | None] = no_warm_up

    def nap(self, seconds: float, value: Any) -> Callable[[], Any]:
        """Work that takes ``seconds``, then gives ``value``."""
        sleep = self.sleep
        if sleep is None:

            async def nap_async() -> Any:
                await asyncio.sleep(seconds)
                return value

            return nap_async

        def nap() -> Any:
            sleep(seconds)
            return value

        return nap

    def slow(self, work: Work) -> Callable[..., Any]:
        """``work`` as this backend's work: see :class:`Work`."""
        sleep = self.sleep
        if sleep is None:

            async def slow_async(*_state: Any) -> None:
                work.started.set()
                try:
                    await asyncio.sleep(5)  # an asyncio task cannot wait for a thread's event
                    work.log.append("finished")
                except BaseException as interruption:
                    work.log.append(type(interruption).__name__)
                    if work.cleanup:
                        await asyncio.sleep(work.cleanup)
                        work.log.append("cleaned up")
                    raise
                finally:
                    work.finished.set()

            return slow_async

        def slow(*_state: Any) -> None:
            work.started.set()
            try:
                work.release.wait(5)
                work.log.append("finished")
            except BaseException as interruption:
                work.log.append(type(interruption).__name__)
                if work.cleanup:
                    sleep(work.cleanup)
                    work.log.append("cleaned up")
                raise
            finally:
                work.finished.set()

        return slow


def asyncio_holds(backend: Any) -> dict[str, Any]:
    async def leftovers() -> dict[str, Any]:
        live_timers = [
            handle for handle in getattr(backend.loop, "_scheduled", []) if not handle.cancelled()
        ]
        return {
            "other tasks": asyncio.all_tasks() - {asyncio.current_task()},
            "live timers": live_timers,
        }

    return asyncio.run_coroutine_threadsafe(leftovers(), backend.loop).result(5)


def gevent_sleep(seconds: float) -> None:
    import gevent

    gevent.sleep(seconds)


def gevent_event() -> Any:
    import gevent.event

    return gevent.event.Event()


def gevent_holds(backend: Any) -> dict[str, Any]:
    from greenlet import greenlet

    gc.collect()
    live = sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)
    return {"live greenlets": live}


def fill_the_pool(backend: Any) -> int | None:
    """Start every thread of the backend's pool of ``max_workers``; None if it has no such."""
    workers = getattr(backend, "max_workers", None)
    if workers is None:
        return None
    everyone = threading.Barrier(workers)

    def fill_pool() -> FlowGenerator:
        yield parallel([functools.partial(everyone.wait, 5)] * workers)

    coflow.start(fill_pool, initial_state=None, backend=backend).result(timeout=5)
    return 1 + workers  # the scheduler and a full pool


#: A pool thread cannot be interrupted: stopped, its work is left to finish.
POOL_KIT = Kit(
    sleep=time.sleep,
    fate="finished",
    event=threading.Event,
    holds=lambda backend: {},
    warm_up=fill_the_pool,
)
KITS = {
    "asyncio": Kit(sleep=None, fate="CancelledError", event=threading.Event, holds=asyncio_holds),
    "gevent": Kit(sleep=gevent_sleep, fate="GreenletExit", event=gevent_event, holds=gevent_holds),
    **{name: POOL_KIT for name in POOL_BACKENDS},
}


def stop_once_started(runner: coflow.Runner, started: Any) -> float:
    """Stop ``runner`` once its work has started; seconds until its flow had ended."""
    assert started.wait(5)
    stopped_at = time.monotonic()
    runner.stop()
    with pytest.raises(FlowStopped):
        runner.result(timeout=5)
    return time.monotonic() - stopped_at


# --- true concurrency ------------------------------------------------------------------------


@pytest.mark.parametrize("name", backend_params(REAL_BACKENDS))
def test_parallel_tasks_really_run_at_the_same_time(name: str) -> None:
    def main() -> FlowGenerator:
        results = yield parallel([KITS[name].nap(0.2, index) for index in range(20)])
        yield set_state(lambda state: results)

    with open_backend(name) as backend:
        started = time.monotonic()
        runner = coflow.start(main, initial_state=None, backend=backend)
        final = runner.result(timeout=5)
        elapsed = time.monotonic() - started

    assert final == list(range(20))
    assert 0.19 <= elapsed < 0.8, f"20 tasks of 0.2 s took {elapsed:.3f} s"


# --- a race's loser is really cancelled --------------------------------------------------------


@pytest.mark.parametrize("name", backend_params(INTERRUPTING_BACKENDS))
def test_race_loser_is_interrupted_and_cleans_up_before_the_race_returns(name: str) -> None:
    kit = KITS[name]
    loser = Work(kit, cleanup=0.05)  # cleanup that takes a while

    def main() -> FlowGenerator:
        winner = yield race([loser.fn, kit.nap(0.05, "winner")])
        loser.log.append(("race returned", winner))

    with open_backend(name) as backend:
        started = time.monotonic()
        coflow.start(main, initial_state=None, backend=backend).result(timeout=5)
        elapsed = time.monotonic() - started

    assert loser.log == [kit.fate, "cleaned up", ("race returned", "winner")]
    assert elapsed < 1.0


def test_threads_race_loser_late_result_is_discarded(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    loser_returned = threading.Event()

    def slow_update(state: dict[str, Any]) -> Ok[dict[str, Any]]:
        release.wait(5)
        loser_returned.set()
        return Ok({**state, "written_by": "loser"})

    def loser() -> FlowGenerator:
        yield run(slow_update)
        return "loser"

    def winner() -> FlowGenerator:
        yield wait(0.05)
        return "winner"

    seen: dict[str, Any] = {}

    def main() -> FlowGenerator:
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


@pytest.mark.parametrize("name", backend_params(INTERRUPTING_BACKENDS))
def test_stop_interrupts_the_running_work(name: str) -> None:
    kit = KITS[name]
    work = Work(kit)

    def main() -> FlowGenerator:
        yield run(work.fn)

    with open_backend(name) as backend:
        runner = coflow.start(main, initial_state=None, backend=backend)
        elapsed = stop_once_started(runner, work.started)

    assert work.log == [kit.fate]
    assert runner.status == "stopped"
    assert elapsed < 1.0


@pytest.mark.parametrize("name", backend_params(POOL_BACKENDS))
def test_stop_ends_the_flow_while_the_pool_thread_still_runs(name: str) -> None:
    work = Work(POOL_KIT)

    def main() -> FlowGenerator:
        yield run(work.fn)

    with open_backend(name) as backend:
        try:
            runner = coflow.start(main, initial_state=None, backend=backend)
            elapsed = stop_once_started(runner, work.started)
            still_running = not work.finished.is_set()
        finally:
            work.release.set()
        assert work.finished.wait(5)

    assert still_running, "stop waited for the pool thread"
    assert work.log == ["finished"]
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
    def main() -> FlowGenerator:
        yield wait_until(all_signals_in)

    futures: list[list[Any]] = [[] for _ in range(SENDERS)]

    with open_backend(name) as backend:
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
    def count(step: int) -> FlowGenerator:
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


@pytest.mark.parametrize("name", backend_params(REAL_BACKENDS))
def test_start_stop_cycles_leave_no_tasks_timers_greenlets_or_threads(name: str) -> None:
    kit = KITS[name]
    works: list[Work] = []  # the work of the cycles stopped in run (the others stop in wait)

    def blocked_in(cycle: int, work: Work) -> Callable[[], FlowGenerator]:
        def in_run() -> FlowGenerator:
            yield run(work.fn)

        def in_wait() -> FlowGenerator:
            yield set_state(lambda state: work.started.set())
            yield wait(5)

        if cycle % 2 == 0:
            works.append(work)
            return in_run
        return in_wait

    with open_backend(name) as backend:

        def cycle(index: int) -> None:
            work = Work(kit)
            runner = coflow.start(blocked_in(index, work), initial_state=None, backend=backend)
            stop_once_started(runner, work.started)
            work.release.set()  # on threads, the pool thread left to finish goes back to the pool

        before = set(threading.enumerate())
        idle = kit.holds(backend)
        try:
            kept = kit.warm_up(backend)
            for index in range(10):
                cycle(index)
            warm = set(threading.enumerate())
            assert kept is None or len(warm - before) == kept

            for index in range(CYCLES):
                cycle(index)

            assert kit.holds(backend) == idle
            assert set(threading.enumerate()) - warm == set()
        finally:
            for work in works:
                work.release.set()

    own = set(threading.enumerate()) - before
    for thread in own:
        thread.join(5)
    assert [thread for thread in own if thread.is_alive()] == []
    assert [work.log for work in works] == [[kit.fate]] * (5 + CYCLES // 2)


# --- how start picks a backend -----------------------------------------------------------------


def three_steps() -> FlowGenerator:
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
def test_under_gevent_monkey_patching_start_uses_gevent_and_runs_work_in_greenlets(
    tmp_path: Path,
) -> None:
    # Run outside the source tree, so the program imports coflow as installed.
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GEVENT_PATCHED_PROGRAM)],
        cwd=tmp_path,
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


@pytest.mark.parametrize("name", backend_params(["gevent", *POOL_BACKENDS]))
def test_a_coroutine_function_given_to_run_is_a_type_error_naming_the_backend(name: str) -> None:
    async def fetch(state: Any) -> str:
        return "never"

    caught: list[BaseException] = []

    def main() -> FlowGenerator:
        try:
            yield run(fetch)
        except TypeError as error:
            caught.append(error)
        yield set_state(lambda state: "went on")

    with open_backend(name) as backend:
        final = coflow.start(main, initial_state=None, backend=backend).result(timeout=5)

    assert final == "went on"
    assert len(caught) == 1
    assert f"{backend.name} backend" in str(caught[0])
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

    def main() -> FlowGenerator:
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

    def main() -> FlowGenerator:
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

    def main() -> FlowGenerator:
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
