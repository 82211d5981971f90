"""``coflow.web.sse_asgi``: a runner's events as server-sent events, served by a real uvicorn.

Each test starts uvicorn on 127.0.0.1 (an ephemeral port) and reads the stream
with httpx, as a browser's EventSource would.  Flows run on the server's own
asyncio loop and on the threads backend.  Flows wait for ``n`` to reach 100.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_servers import (
    LIMIT,
    Server,
    read_event,
    read_events,
    read_rest,
    serve_asgi,
    wait_for,
)

import coflow
import coflow.web
from coflow import FlowGenerator, wait_until
from coflow.backends.asyncio import AsyncioBackend
from coflow.backends.threads import ThreadBackend

TESTS = Path(__file__).resolve().parent


def until_100() -> FlowGenerator:
    yield wait_until(lambda s: s["n"] >= 100)


def fails_at_100() -> FlowGenerator:
    yield wait_until(lambda s: s["n"] >= 100)
    raise ValueError("n reached 100")


def set_n(n: int) -> Callable[[Any], Any]:
    return lambda s: {**s, "n": n}


@pytest.fixture(params=["asyncio", "threads"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Callable[..., Any]]]:
    """A server streaming the runners that ``serve(**runners)`` names, and a way to start one."""
    runners: dict[str, coflow.Runner] = {}
    options: dict[str, Any] = {}
    app = coflow.web.sse_asgi(runners.get, heartbeat=30.0)
    threads = ThreadBackend() if request.param == "threads" else None

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        await (options.get("app") or app)(scope, receive, send)

    with serve_asgi(dispatch) as server:
        backend = threads or AsyncioBackend(server.loop)

        def start(key: str, flow: Any = until_100, state: Any = None, **web: Any) -> coflow.Runner:
            runner = coflow.start(
                flow, initial_state={"n": 0} if state is None else state, backend=backend,
                supervisor=None,
            )
            runners[key] = runner
            if web:
                options["app"] = coflow.web.sse_asgi(runners.get, **web)
            return runner

        try:
            yield server, start
        finally:
            for runner in runners.values():
                runner.stop()
            if threads is not None:
                threads.close()


def test_the_current_state_comes_first_then_each_change_then_done(served: Any) -> None:
    server, start = served
    runner = start("book-1", state={"n": 3, "title": "Dune"})
    with httpx.Client(timeout=LIMIT) as client, client.stream(
        "GET", f"{server.url}/book-1"
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        lines = response.iter_lines()
        opening = read_event(lines)
        assert opening is not None and opening.retry == "2000"
        [first] = read_events(lines, 1)
        assert (first.event, first.json) == ("FlowState", {"n": 3, "title": "Dune"})
        assert first.id is not None and first.id.startswith(f"{runner.id}-")
        runner.signal(set_n(4))
        [second] = read_events(lines, 1)
        assert (second.event, second.json) == ("FlowState", {"n": 4, "title": "Dune"})
        runner.signal(set_n(100))
        rest = read_rest(lines)  # the response ends after FlowDone
    assert [(event.event, event.json) for event in rest] == [
        ("FlowState", {"n": 100, "title": "Dune"}),
        ("FlowDone", {"n": 100, "title": "Dune"}),
    ]
    assert len({first.id, second.id, rest[0].id, rest[1].id}) == 4


def test_a_failure_is_sent_as_flow_error_and_ends_the_response(served: Any) -> None:
    server, start = served
    runner = start("f", flow=fails_at_100)
    with httpx.Client(timeout=LIMIT) as client, client.stream("GET", f"{server.url}/f") as response:
        lines = response.iter_lines()
        read_events(lines, 1)
        runner.signal(set_n(100))
        rest = read_rest(lines)
    assert rest[-1].event == "FlowError"
    assert rest[-1].json == {"error": "ValueError", "message": "n reached 100"}


def test_an_ended_runner_gives_its_final_event_only(served: Any) -> None:
    server, start = served
    done = start("done", state={"n": 100})
    assert done.result(timeout=LIMIT) == {"n": 100}
    failed = start("failed", flow=fails_at_100, state={"n": 100})
    with pytest.raises(coflow.FlowFailed):
        failed.result(timeout=LIMIT)
    stopped = start("stopped")
    stopped.stop()
    with pytest.raises(coflow.FlowStopped):
        stopped.result(timeout=LIMIT)
    with httpx.Client(timeout=LIMIT) as client:
        said = {}
        for key in ("done", "failed", "stopped"):
            with client.stream("GET", f"{server.url}/{key}") as response:
                [event] = read_rest(response.iter_lines())
                said[key] = (event.event, event.json)
    assert said == {
        "done": ("FlowDone", {"n": 100}),
        "failed": ("FlowError", {"error": "ValueError", "message": "n reached 100"}),
        "stopped": ("FlowStopped", None),
    }


def test_a_runner_stopped_while_streaming_ends_with_flow_stopped(served: Any) -> None:
    server, start = served
    runner = start("s")
    with httpx.Client(timeout=LIMIT) as client, client.stream("GET", f"{server.url}/s") as response:
        lines = response.iter_lines()
        read_events(lines, 1)
        runner.stop()
        assert [(event.event, event.data) for event in read_rest(lines)] == [
            ("FlowStopped", ["null"])
        ]


def test_a_quiet_stream_sends_heartbeats(served: Any) -> None:
    server, start = served
    start("quiet", heartbeat=0.05)
    with httpx.Client(timeout=LIMIT) as client, client.stream(
        "GET", f"{server.url}/quiet"
    ) as response:
        lines = response.iter_lines()
        read_events(lines, 1)
        beat = read_event(lines)
    assert beat is not None and beat.comments == ["heartbeat"] and beat.event is None


def test_last_event_id_of_the_current_state_skips_the_snapshot(served: Any) -> None:
    server, start = served
    runner = start("b")
    url = f"{server.url}/b"
    with httpx.Client(timeout=LIMIT) as client:
        with client.stream("GET", url) as response:
            [snapshot] = read_events(response.iter_lines(), 1)
        with client.stream("GET", url, headers={"Last-Event-ID": snapshot.id or ""}) as response:
            lines = response.iter_lines()
            runner.signal(set_n(7))
            [first] = read_events(lines, 1)  # the snapshot was skipped: the browser has it
        assert first.json == {"n": 7}
        with client.stream("GET", url, headers={"Last-Event-ID": snapshot.id or ""}) as response:
            [first] = read_events(response.iter_lines(), 1)  # a state it does not have
        assert (first.event, first.json) == ("FlowState", {"n": 7})
        with client.stream("GET", url, headers={"Last-Event-ID": "1-0000"}) as response:
            [first] = read_events(response.iter_lines(), 1)
        assert first.json == {"n": 7}


@dataclasses.dataclass
class Book:
    title: str
    pages: int


def test_encoding_dataclasses_a_custom_encoder_and_a_state_that_will_not_encode(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server, start = served
    runner = start("d", state={"n": 0, "book": Book("Dune", 412)})
    with httpx.Client(timeout=LIMIT) as client:
        with client.stream("GET", f"{server.url}/d") as response:
            lines = response.iter_lines()
            [first] = read_events(lines, 1)
            assert first.json == {"n": 0, "book": {"title": "Dune", "pages": 412}}
            with caplog.at_level(logging.ERROR, logger="coflow"):
                runner.signal(lambda s: {**s, "n": 1, "book": object()})
                [bad] = read_events(lines, 1)
            runner.signal(lambda s: {"n": 2})
            [good] = read_events(lines, 1)  # and the stream goes on
        assert bad.event == "EncodeError"
        assert bad.json["error"] == "TypeError"
        said = "state of flow 'until_100' cannot be encoded as JSON:"
        assert bad.json["message"].startswith(said)
        assert "until_100" in caplog.text and "cannot be encoded" in caplog.text
        assert (good.event, good.json) == ("FlowState", {"n": 2})
        start("pretty", heartbeat=30.0, encoder=lambda state: json.dumps(state, indent=2))
        with client.stream("GET", f"{server.url}/pretty") as response:
            [pretty] = read_events(response.iter_lines(), 1)
        assert len(pretty.data) > 1 and pretty.json == {"n": 0}  # one data: line per line


def test_an_unknown_key_is_404_and_the_browser_module_is_served(served: Any) -> None:
    server, _ = served
    with httpx.Client(timeout=LIMIT) as client:
        missing = client.get(f"{server.url}/nope")
        module = client.get(f"{server.url}/coflow-flow.js")
        posted = client.post(f"{server.url}/nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export function subscribe" in module.text
    assert "customElements.define" in module.text
    assert posted.status_code == 405


def test_a_client_that_disconnects_is_unsubscribed_at_once(served: Any) -> None:
    server, start = served
    runner = start("gone")
    with httpx.Client(timeout=LIMIT) as client, client.stream(
        "GET", f"{server.url}/gone"
    ) as response:
        lines = response.iter_lines()  # kept: an iterator dropped half-read closes the connection
        read_events(lines, 1)
        assert coflow.web.open_streams(runner) == 1
    wait_for(lambda: coflow.web.open_streams(runner) == 0, what="the stream to leave the runner")
    assert runner.status == "running"


def test_end_streams_ends_a_hundred_open_streams_promptly(served: Any) -> None:
    server, start = served
    runner = start("many")
    count = 100

    async def main() -> tuple[float, list[list[Any]]]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(timeout=LIMIT, limits=limits) as client:

            async def follow(opened: asyncio.Event) -> list[Any]:
                async with client.stream("GET", f"{server.url}/many") as response:
                    lines = response.aiter_lines()
                    events = []
                    async for line in lines:
                        if line.startswith("event:"):
                            events.append(line)
                            opened.set()
                    return events

            opens = [asyncio.Event() for _ in range(count)]
            tasks = [asyncio.ensure_future(follow(opened)) for opened in opens]
            await asyncio.wait_for(asyncio.gather(*(opened.wait() for opened in opens)), LIMIT)
            assert coflow.web.open_streams(runner) == count
            began = time.monotonic()
            coflow.web.end_streams()
            results = await asyncio.wait_for(asyncio.gather(*tasks), LIMIT)
            return time.monotonic() - began, results

    took, results = asyncio.run(main())
    assert took < 1.0
    assert all(events == ["event: FlowState"] for events in results)
    wait_for(lambda: coflow.web.open_streams(runner) == 0, what="the streams to leave")
    assert runner.status == "running"


def test_the_app_checks_what_it_is_given() -> None:
    with pytest.raises(TypeError):
        coflow.web.sse_asgi("book-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        coflow.web.sse_asgi(lambda key: None, heartbeat=0)
    with pytest.raises(ValueError):
        coflow.web.sse_asgi(lambda key: None, maxsize=0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sigint_ends_uvicorn_at_once_with_a_hundred_streams_open() -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "web_app:app", "--app-dir", str(TESTS),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
        "--timeout-graceful-shutdown", "5", "--no-access-log",
    ]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        cwd=TESTS,  # not the source tree, whose coflow/ lacks coflow.backends until installed
    )
    url = f"http://127.0.0.1:{port}/flows/book-1"
    try:
        def listening() -> bool:
            assert process.poll() is None, "uvicorn exited"
            try:
                httpx.get(f"http://127.0.0.1:{port}/flows/coflow-flow.js", timeout=LIMIT)
            except httpx.TransportError:
                return False
            return True

        wait_for(listening, 10 * LIMIT, "uvicorn to listen")

        async def main() -> float:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=LIMIT, limits=limits) as client:
                streams = [client.stream("GET", url) for _ in range(100)]
                responses = await asyncio.gather(*(stream.__aenter__() for stream in streams))
                for response in responses:
                    lines = response.aiter_lines()
                    while not (await anext(lines)).startswith("event: FlowState"):
                        pass
                began = time.monotonic()
                process.send_signal(signal.SIGINT)
                await asyncio.to_thread(process.wait, 10 * LIMIT)
                took = time.monotonic() - began
                for stream in streams:
                    await stream.__aexit__(None, None, None)
                return took

        took = asyncio.run(main())
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(LIMIT)
        if process.stderr:
            process.stderr.close()
    # uvicorn ticks every 0.1 s: it notices the signal within that, then shuts down.
    assert took < 1.0, stderr
    assert "cancel" not in stderr.lower(), stderr
    assert "Finished server process" in stderr, stderr


def test_an_apps_lifespan_shutdown_ends_its_own_streams_and_no_other_apps() -> None:
    """Two servers in one process (or one after another): each one's shutdown ends its own."""
    backend = ThreadBackend()
    runner = coflow.start(until_100, initial_state={"n": 0}, backend=backend, supervisor=None)
    stopping, serving = coflow.web.sse_asgi(runner), coflow.web.sse_asgi(runner)

    async def open_stream(app: Any) -> tuple[asyncio.Task[None], asyncio.Event]:
        opened, gone = asyncio.Event(), asyncio.Event()

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            if b"event: FlowState" in message.get("body", b""):
                opened.set()

        scope = {"type": "http", "method": "GET", "path": "/book", "headers": []}
        task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.wait_for(opened.wait(), LIMIT)
        return task, gone

    async def main() -> None:
        ended, _ = await open_stream(stopping)
        kept, gone = await open_stream(serving)
        lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

        async def receive() -> Any:
            return next(lifespan)

        async def send(message: Any) -> None:
            pass

        await stopping({"type": "lifespan"}, receive, send)
        await asyncio.wait_for(ended, LIMIT)
        assert not kept.done()
        assert coflow.web.open_streams(runner) == 1
        gone.set()
        await asyncio.wait_for(kept, LIMIT)

    try:
        asyncio.run(main())
        assert coflow.web.open_streams(runner) == 0
    finally:
        runner.stop()
        backend.close()
