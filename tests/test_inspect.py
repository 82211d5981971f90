"""``coflow.inspect()``, ``coflow.stuck()`` and ``HistoryRecorder``."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import coflow
from coflow import HistoryRecorder, Ok, Supervisor
from coflow.testing import lasting


@pytest.mark.plain_step_loop
def test_waiting_since_and_deadlines_are_exact(virtual_backend: Any) -> None:
    @coflow.flow(name="t-sleeper")
    def sleeper() -> Any:
        yield coflow.wait(1.0)
        yield coflow.wait(5.0)

    @coflow.flow(name="t-receiver")
    def receiver() -> Any:
        yield coflow.wait(0.5)
        yield coflow.receive(lambda message: message == "go")

    @coflow.flow(name="t-quiet")
    def quiet() -> Any:
        yield coflow.debounce(4.0)

    @coflow.flow(name="t-worker")
    def worker() -> Any:
        yield coflow.run(lasting(10.0, lambda state: Ok(1)))

    runners = [
        coflow.start(flow, backend=virtual_backend) for flow in (sleeper, receiver, quiet, worker)
    ]
    virtual_backend.advance(2.0)
    found = {info.name: info for info in coflow.inspect().runners()}
    sleeping = found["t-sleeper"]
    assert sleeping.waiting == coflow._inspect.Waiting("timer", deadline=6.0)
    assert sleeping.waiting_since == 1.0 and sleeping.now == 2.0
    assert sleeping.step == "wait(seconds=5.0)"
    assert sleeping.site == f"{__file__}:{_line('yield coflow.wait(5.0)')}"
    receiving = found["t-receiver"]
    assert receiving.waiting is not None and receiving.waiting.kind == "receive"
    assert receiving.waiting_since == 0.5
    assert found["t-quiet"].waiting == coflow._inspect.Waiting("debounce", deadline=4.0)
    working = found["t-worker"]
    assert working.waiting == coflow._inspect.Waiting("work", attempt=1)
    assert working.waiting_since == 0.0
    assert [info.name for info in coflow.stuck(1.5)] == ["t-worker"]
    assert {info.name for info in coflow.stuck(0.5)} == {"t-sleeper", "t-receiver", "t-worker"}
    for runner in runners:
        runner.stop()


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("state", "summary"),
    [
        ({"book": "b-1", "dirty": True}, "{'book': 'b-1', 'dirty': True}"),
        ([1, 2.5, None], "[1, 2.5, None]"),
        (10**30, "1000000000000000000000000000000"),
        (list(range(1000)), "[0, 1, 2, 3, 4, 5, ...]"),
        ({"notes": "x" * 500}, "{'notes': '" + "x" * 27 + "..." + "x" * 28 + "'}"),
        (_Unprintable(), "<unrepresentable _Unprintable: RuntimeError('no repr')>"),
    ],
    ids=["small-dict", "small-list", "big-int", "long-list", "long-string", "broken-repr"],
)
def test_a_state_is_summed_up_short_and_never_raises(
    virtual_backend: Any, state: Any, summary: str
) -> None:
    @coflow.flow(name="t-summed")
    def holder() -> Any:
        yield coflow.wait(1.0)

    runner = coflow.start(holder, initial_state=state, backend=virtual_backend)
    virtual_backend.run_until_idle()
    try:
        (info,) = coflow.inspect().find("t-summed")
        assert info.state == summary and len(info.state) <= 80
    finally:
        runner.stop()
        virtual_backend.run_until_idle()


def _line(text: str) -> int:
    """The line of this file that holds ``text``."""
    with open(__file__) as source:
        return next(number for number, line in enumerate(source, 1) if text in line)


def test_the_tree_of_calls_spawns_and_supervisors(virtual_backend: Any) -> None:
    @coflow.flow(name="t-leaf")
    def leaf() -> Any:
        yield coflow.wait(10.0)

    @coflow.flow(name="t-middle")
    def middle() -> Any:
        yield coflow.spawn(leaf)
        yield coflow.call(leaf)

    @coflow.flow(name="t-top")
    def top() -> Any:
        yield coflow.call(middle)

    supervisor = Supervisor(backend=virtual_backend)
    runner = supervisor.start(top)
    virtual_backend.advance(1.0)
    snapshot = coflow.inspect()
    (root,) = [info for info in snapshot.roots if info.name == "t-top"]
    assert root.waiting == coflow._inspect.Waiting("children")
    assert root.step == "call(t-middle)"
    (child,) = root.children
    assert child.path == "t-top > t-middle"
    assert [kid.name for kid in child.children] == ["t-leaf", "t-leaf"]
    assert child.children[0].path == "t-top > t-middle > t-leaf"
    (group,) = [group for group in snapshot.supervisors if runner.id in group.runners]
    assert group.runners == (runner.id,) and root.supervisor == group.id
    runner.stop()


def test_a_join_a_call_and_a_stop_waiting_for_children_say_since_when(
    coflow_backend: Any, tolerance: float
) -> None:
    @coflow.flow(name="t-stubborn")
    def stubborn() -> Any:
        try:
            yield coflow.wait(30.0)
        finally:
            yield coflow.wait(30.0)  # its cleanup holds its stopped parent

    @coflow.flow(name="t-joining")
    def joining() -> Any:
        yield coflow.wait(0.1)
        yield coflow.parallel([lasting(30.0, lambda state: Ok(1)), lasting(30.0, lambda _: Ok(2))])

    @coflow.flow(name="t-calling")
    def calling() -> Any:
        yield coflow.wait(0.1)
        yield coflow.call(stubborn)

    @coflow.flow(name="t-stopped")
    def stopped() -> Any:
        yield coflow.spawn(stubborn)
        yield coflow.wait(30.0)

    began = coflow_backend.now()
    runners = [coflow.start(flow, backend=coflow_backend) for flow in (joining, calling, stopped)]

    def since(name: str) -> float | None:
        found = coflow.inspect().find(name)
        if not found or found[0].waiting is None or found[0].waiting.kind != "children":
            return None
        return found[0].waiting_since

    def reach(seconds: float) -> None:
        """Let the backend's clock reach ``began + seconds``: a flow that waits till then."""
        pause = coflow.wait(max(0.0, began + seconds - coflow_backend.now()))
        coflow.start(pause, backend=coflow_backend).result(timeout=5)

    try:
        reach(0.3)
        runners[2].stop()
        reach(0.4)
        assert since("t-joining") == pytest.approx(began + 0.1, abs=tolerance or 1e-9)
        assert since("t-calling") == pytest.approx(began + 0.1, abs=tolerance or 1e-9)
        # the stop took effect at 0.3, and the parent waits for its child's cleanup since then
        assert since("t-stopped") == pytest.approx(began + 0.3, abs=tolerance or 1e-9)
        assert {info.name for info in coflow.stuck(0.2)} >= {"t-joining", "t-calling"}
    finally:
        for runner in runners:
            runner.stop(grace=0)
        for runner in runners:
            with pytest.raises(coflow.FlowStopped):
                runner.result(timeout=5)


def test_a_snapshot_from_another_thread_while_flows_run() -> None:
    @coflow.flow(name="t-busy", initial_state=0)
    def busy() -> Any:
        while True:
            yield coflow.set_state(lambda count: count + 1)
            yield coflow.wait(0.001)

    runners = [coflow.start(busy, backend="threads") for _ in range(20)]
    errors: list[BaseException] = []
    counts: list[int] = []

    def snap() -> None:
        try:
            for _ in range(50):
                counts.append(len([i for i in coflow.inspect().runners() if i.name == "t-busy"]))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=snap)
    thread.start()
    thread.join(30)
    for runner in runners:
        runner.stop()
    for runner in runners:
        with pytest.raises(coflow.FlowStopped):
            runner.result(timeout=10)
    assert errors == []
    assert counts and all(count == 20 for count in counts)


def test_ten_thousand_runners(virtual_backend: Any) -> None:
    runners = [coflow.start(coflow.wait(5.0), backend=virtual_backend) for _ in range(10_000)]
    virtual_backend.advance(1.0)
    started = time.perf_counter()
    snapshot = coflow.inspect()
    elapsed = time.perf_counter() - started
    assert len([info for info in snapshot.roots if info.waiting_since == 0.0]) >= 10_000
    assert elapsed < 5.0
    for runner in runners:
        runner.stop()


def test_history_is_bounded(virtual_backend: Any) -> None:
    recorder = HistoryRecorder(limit=5)
    supervisor = Supervisor(backend=virtual_backend, instruments=(recorder,))

    def counting() -> Any:
        for _ in range(10):
            yield coflow.wait(1.0)

    runner = supervisor.start(counting, name="t-history")
    runner.result()
    history = recorder.history(runner)
    assert len(history) == 5
    assert history[-1] == (10.0, "runner_ended", "done")
    assert history[-2] == (10.0, "step_ended", "wait(seconds=1.0)")
    with pytest.raises(ValueError):
        HistoryRecorder(limit=0)


def test_an_instrumented_runner_knows_when_it_blocked_in_a_join(virtual_backend: Any) -> None:
    recorder = HistoryRecorder()
    supervisor = Supervisor(backend=virtual_backend, instruments=(recorder,))

    def joined() -> Any:
        yield coflow.wait(2.0)
        yield coflow.parallel([coflow.wait(10.0), coflow.wait_until(lambda state: False)])

    runner = supervisor.start(joined, name="t-joined")
    virtual_backend.advance(3.0)
    (info,) = coflow.inspect().find("t-joined")
    assert info.waiting_since == 2.0
    runner.stop()


def test_the_inspector_app_serves_the_page_a_runner_and_the_snapshot_stream(
    virtual_backend: Any,
) -> None:
    import json as json_module

    import coflow.web

    history = coflow.HistoryRecorder(limit=10)
    coflow.add_instrument(history)
    try:
        runner = coflow.start(
            coflow.wait_until(lambda state: False), initial_state={"book": "b-1"},
            backend=virtual_backend, name="blocked",
        )
        virtual_backend.run_until_idle()
    finally:
        coflow.remove_instrument(history)
    app = coflow.web.inspector_wsgi(history=history)
    answers: list[str] = []

    def get(path: str) -> Any:
        return app({"PATH_INFO": path}, lambda status, headers: answers.append(status))

    assert b"coflow inspector" in b"".join(get("/"))
    detail = json_module.loads(b"".join(get(f"/runner/{runner.id}")))
    assert detail["info"]["name"] == "blocked"
    assert "b-1" in detail["state"]
    assert [event[1] for event in detail["history"]][:2] == ["runner_started", "step_began"]
    assert get("/runner/0") == [b"no live runner 0\n"]
    assert answers[-1].startswith("404")
    stream = iter(get("/snapshot"))
    first = next(stream)
    assert first.startswith(b"event: snapshot\ndata: ")
    assert b'"name": "blocked"' in first
    runner.stop()


def test_the_demo_web_refuses_the_virtual_clock() -> None:
    from coflow.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--web", "--virtual"])
    assert exited.value.code == 2
