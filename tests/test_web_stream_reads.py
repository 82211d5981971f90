"""``EventStream.next_event(timeout)`` and ``anext_event(timeout)``: a read that can give up.

What coflow.web's heartbeats are made of: ``None`` when no event came in time
(``finished`` false) or the stream is over (``finished`` true).  Each test runs
on every backend.  Flows wait for the value 100, which no test sends.  On the
virtual clock a read that nothing could ever end raises ``Deadlock``, as
``result(timeout=)`` does, so there a timer is kept pending (``keep_time``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import run_async

import coflow
from coflow import FlowDone, FlowGenerator, FlowState, wait_until
from coflow.backends.virtual import VirtualBackend


def waits_for_100() -> FlowGenerator:
    yield wait_until(lambda s: s >= 100)


def keep_time(backend: Any) -> coflow.Runner:
    """A flow waiting an hour: on the virtual clock, time has something to run to."""
    return coflow.start(coflow.wait(3600.0), backend=backend, supervisor=None)


def settle(backend: Any, future: Any) -> None:
    if isinstance(backend, VirtualBackend):
        backend.run_until_idle()
    future.result(timeout=5)


def test_next_event_gives_none_when_no_event_comes_in_time(coflow_backend: Any) -> None:
    clock = keep_time(coflow_backend)
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    with runner.events() as stream:
        assert stream.next_event(0.01) is None
        assert not stream.finished
        settle(coflow_backend, runner.signal(lambda s: s + 1))
        event = stream.next_event(5)
        assert isinstance(event, FlowState) and event.state == 1
        assert stream.next_event(0) is None  # a zero timeout only looks
    runner.stop()
    clock.stop()


def test_next_event_gives_the_final_event_then_none_and_finished(coflow_backend: Any) -> None:
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    stream = runner.events()
    settle(coflow_backend, runner.signal(lambda s: 100))
    assert runner.result(timeout=5) == 100
    assert isinstance(stream.next_event(5), FlowState)
    assert not stream.finished
    assert isinstance(stream.next_event(5), FlowDone)
    assert stream.finished and not stream.closed
    assert stream.next_event(5) is None


def test_a_stopped_runners_stream_is_finished_with_no_event(coflow_backend: Any) -> None:
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    stream = runner.events()
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    assert stream.next_event(5) is None
    assert stream.finished


def test_anext_event_waits_as_long_as_told(coflow_backend: Any) -> None:
    clock = keep_time(coflow_backend)
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    stream = runner.events()

    async def main() -> list[Any]:
        quiet = await stream.anext_event(0.01)
        runner.signal(lambda s: s + 5)
        changed = await stream.anext_event(5)
        return [quiet, stream.finished, changed]

    quiet, finished, changed = run_async(coflow_backend, main)
    assert quiet is None and not finished
    assert isinstance(changed, FlowState) and changed.state == 5
    stream.close()
    assert stream.finished
    assert run_async(coflow_backend, lambda: stream.anext_event(5)) is None
    runner.stop()
    clock.stop()


def test_many_quiet_reads_leave_the_stream_as_it_was(coflow_backend: Any) -> None:
    clock = keep_time(coflow_backend)
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    stream = runner.events()
    for _ in range(50):
        assert stream.next_event(0.001) is None
    settle(coflow_backend, runner.signal(lambda s: s + 1))
    event = stream.next_event(5)
    assert isinstance(event, FlowState) and event.state == 1
    assert runner.stream_count() == 1
    stream.close()
    assert runner.stream_count() == 0
    runner.stop()
    clock.stop()


def test_close_from_another_thread_ends_a_long_timed_read(coflow_backend: Any) -> None:
    if isinstance(coflow_backend, VirtualBackend):
        pytest.skip("a reader on the virtual clock drives it: it never waits for another thread")
    runner = coflow.start(waits_for_100, initial_state=0, backend=coflow_backend)
    stream = runner.events()
    got: list[Any] = []
    reading = threading.Event()

    def read() -> None:
        reading.set()
        got.append(stream.next_event(60))

    if coflow_backend.name == "gevent":
        import gevent

        reader = gevent.spawn(read)
        gevent.sleep(0)
        stream.close()
        reader.join(5)
    else:
        thread = threading.Thread(target=read)
        thread.start()
        assert reading.wait(5)
        stream.close()
        thread.join(5)
        assert not thread.is_alive()
    assert got == [None] and stream.finished
    runner.stop()


@pytest.mark.parametrize("timeout", [-1, "1", float("nan")])
def test_the_timeout_is_checked(timeout: Any) -> None:
    runner = coflow.start(waits_for_100, initial_state=0, backend=VirtualBackend())
    stream = runner.events()
    with pytest.raises((ValueError, TypeError)):
        stream.next_event(timeout)
    stream.close()
    runner.stop()
