"""``coflow.web.sse_wsgi``: a runner's events as server-sent events from a WSGI server.

Two real servers on 127.0.0.1: wsgiref's, one thread per request, with flows on
the threads backend; and ``gevent.pywsgi``, with flows on a ``GeventBackend`` in
its hub.  A Flask app mounts the stream beside its pages.  Flows wait for ``n``
to reach 100.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from conftest import needs_gevent
from web_servers import (
    LIMIT,
    Server,
    read_event,
    read_events,
    read_rest,
    serve_wsgi_gevent,
    serve_wsgi_threaded,
    wait_for,
)

import coflow
import coflow.web
from coflow import FlowGenerator, wait_until
from coflow.backends.threads import ThreadBackend


def until_100() -> FlowGenerator:
    yield wait_until(lambda s: s["n"] >= 100)


def set_n(n: int) -> Callable[[Any], Any]:
    return lambda s: {**s, "n": n}


def threaded(
    app_for: Callable[[coflow.Runner], Any],
) -> AbstractContextManager[tuple[Server, coflow.Runner]]:
    class Serving:
        def __enter__(self) -> tuple[Server, coflow.Runner]:
            self.backend = ThreadBackend()
            self.runner = coflow.start(
                until_100, initial_state={"n": 0}, backend=self.backend, supervisor=None
            )
            self.serving = serve_wsgi_threaded(app_for(self.runner))
            return self.serving.__enter__(), self.runner

        def __exit__(self, *exc_info: Any) -> None:
            self.runner.stop()
            self.serving.__exit__(*exc_info)
            self.backend.close()

    return Serving()


def gevented(
    app_for: Callable[[coflow.Runner], Any],
) -> AbstractContextManager[tuple[Server, coflow.Runner]]:
    class Serving:
        def __enter__(self) -> tuple[Server, coflow.Runner]:
            def make_app() -> tuple[Any, Any]:
                from coflow.backends.gevent import GeventBackend

                runner = coflow.start(
                    until_100, initial_state={"n": 0}, backend=GeventBackend(), supervisor=None
                )
                return app_for(runner), runner

            self.serving = serve_wsgi_gevent(make_app)
            server = self.serving.__enter__()
            self.runner = server.made
            return server, self.runner

        def __exit__(self, *exc_info: Any) -> None:
            self.runner.stop()
            self.serving.__exit__(*exc_info)

    return Serving()


SERVERS = [
    pytest.param(threaded, id="wsgiref-threads"),
    pytest.param(gevented, id="pywsgi-gevent", marks=needs_gevent),
]


@pytest.fixture(params=SERVERS)
def serving(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``serving(**web)``: a server streaming one runner at ``/flows/book-1``."""

    def serve(**web: Any) -> AbstractContextManager[tuple[Server, coflow.Runner]]:
        return request.param(lambda runner: coflow.web.sse_wsgi({"book-1": runner}.get, **web))

    yield serve


def test_the_current_state_comes_first_then_each_change_then_done(serving: Any) -> None:
    with serving() as (server, runner), httpx.Client(timeout=LIMIT) as client:
        with client.stream("GET", f"{server.url}/flows/book-1") as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"
            lines = response.iter_lines()
            opening = read_event(lines)
            assert opening is not None and opening.retry == "2000"
            [first] = read_events(lines, 1)
            assert (first.event, first.json) == ("FlowState", {"n": 0})
            assert first.id is not None and first.id.startswith(f"{runner.id}-")
            runner.signal(set_n(5))
            [second] = read_events(lines, 1)
            assert (second.event, second.json) == ("FlowState", {"n": 5})
            runner.signal(set_n(100))
            rest = read_rest(lines)
        assert [(event.event, event.json) for event in rest] == [
            ("FlowState", {"n": 100}),
            ("FlowDone", {"n": 100}),
        ]
        with client.stream("GET", f"{server.url}/flows/book-1") as response:
            [final] = read_rest(response.iter_lines())  # an ended runner: its final event only
        assert (final.event, final.json) == ("FlowDone", {"n": 100})


def test_a_quiet_stream_sends_heartbeats(serving: Any) -> None:
    with serving(heartbeat=0.05) as (server, _), httpx.Client(timeout=LIMIT) as client:
        with client.stream("GET", f"{server.url}/flows/book-1") as response:
            lines = response.iter_lines()
            read_events(lines, 1)
            beat = read_event(lines)
        assert beat is not None and beat.comments == ["heartbeat"]


def test_last_event_id_of_the_current_state_skips_the_snapshot(serving: Any) -> None:
    with serving() as (server, runner), httpx.Client(timeout=LIMIT) as client:
        url = f"{server.url}/flows/book-1"
        with client.stream("GET", url) as response:
            [snapshot] = read_events(response.iter_lines(), 1)
        with client.stream("GET", url, headers={"Last-Event-ID": snapshot.id or ""}) as response:
            lines = response.iter_lines()
            runner.signal(set_n(9))
            [first] = read_events(lines, 1)
        assert first.json == {"n": 9}
        with client.stream("GET", url, headers={"Last-Event-ID": "nothing-it-had"}) as response:
            [first] = read_events(response.iter_lines(), 1)
        assert first.json == {"n": 9}


def test_404_405_and_the_browser_module(serving: Any) -> None:
    with serving() as (server, _), httpx.Client(timeout=LIMIT) as client:
        missing = client.get(f"{server.url}/flows/book-2")
        module = client.get(f"{server.url}/flows/coflow-flow.js")
        posted = client.post(f"{server.url}/flows/book-1")
    assert missing.status_code == 404
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export function subscribe" in module.text
    assert posted.status_code == 405


def test_a_client_that_disconnects_is_unsubscribed(serving: Any) -> None:
    # A WSGI server hears of the disconnect at its next write: the heartbeat.
    with serving(heartbeat=0.05) as (server, runner), httpx.Client(timeout=LIMIT) as client:
        with client.stream("GET", f"{server.url}/flows/book-1") as response:
            lines = response.iter_lines()  # kept: one dropped half-read closes the connection
            read_events(lines, 1)
            assert coflow.web.open_streams(runner) == 1
        wait_for(lambda: coflow.web.open_streams(runner) == 0, what="the stream to leave")
        assert runner.status == "running"


def test_end_streams_ends_every_open_stream(serving: Any) -> None:
    count = 20
    with serving() as (server, runner), httpx.Client(
        timeout=LIMIT, limits=httpx.Limits(max_connections=count)
    ) as client:
        ended: list[list[Any]] = []
        opened = threading.Semaphore(0)

        def follow() -> None:
            with client.stream("GET", f"{server.url}/flows/book-1") as response:
                lines = response.iter_lines()
                first = read_events(lines, 1)
                opened.release()
                ended.append(first + read_rest(lines))

        threads = [threading.Thread(target=follow) for _ in range(count)]
        for thread in threads:
            thread.start()
        for _ in range(count):
            assert opened.acquire(timeout=LIMIT)
        wait_for(lambda: coflow.web.open_streams(runner) == count, what="every stream")
        coflow.web.end_streams()
        for thread in threads:
            thread.join(LIMIT)
            assert not thread.is_alive()
        assert [[event.event for event in events] for events in ended] == [["FlowState"]] * count
        wait_for(lambda: coflow.web.open_streams(runner) == 0, what="the streams to leave")


def environ(path: str, method: str = "GET") -> dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}


def test_close_of_the_body_unsubscribes_at_once() -> None:
    backend = ThreadBackend()
    runner = coflow.start(until_100, initial_state={"n": 0}, backend=backend, supervisor=None)
    app = coflow.web.sse_wsgi(runner)  # one runner, at any path
    started: list[Any] = []
    body = app(environ("/anything"), lambda status, headers: started.append((status, headers)))
    assert started[0][0] == "200 OK"
    chunks = iter(body)
    assert b"event: FlowState" in next(chunks)
    assert coflow.web.open_streams(runner) == 1
    body.close()  # what a server does when its client has gone
    assert coflow.web.open_streams(runner) == 0
    assert list(chunks) == []
    runner.stop()
    backend.close()


def test_a_flask_app_mounts_the_streams_beside_its_pages() -> None:
    flask = pytest.importorskip("flask")
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    backend = ThreadBackend()
    runner = coflow.start(until_100, initial_state={"n": 0}, backend=backend, supervisor=None)
    pages = flask.Flask(__name__)

    @pages.get("/")
    def index() -> str:
        return '<coflow-flow src="/flows/book-1"></coflow-flow>'

    pages.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        pages.wsgi_app, {"/flows": coflow.web.sse_wsgi({"book-1": runner}.get)}
    )
    try:
        with serve_wsgi_threaded(pages) as server, httpx.Client(timeout=LIMIT) as client:
            assert "coflow-flow" in client.get(f"{server.url}/").text
            with client.stream("GET", f"{server.url}/flows/book-1") as response:
                lines = response.iter_lines()
                [first] = read_events(lines, 1)
                runner.signal(set_n(100))
                rest = read_rest(lines)
        assert first.json == {"n": 0}
        assert [event.event for event in rest] == ["FlowState", "FlowDone"]
    finally:
        runner.stop()
        backend.close()
