"""Real servers on 127.0.0.1 (ephemeral ports) and an event-stream reader, for coflow.web's tests.

- ``serve_asgi``: uvicorn on an asyncio loop in a thread of its own; the loop is
  given, so flows can run on it (``AsyncioBackend(server.loop)``).
- ``serve_wsgi_threaded``: wsgiref's server, one thread per request.
- ``serve_wsgi_gevent``: ``gevent.pywsgi`` in the hub of a thread of its own,
  where ``make_app`` runs, so a ``GeventBackend`` made there shares that hub.

Every wait is on a condition with a time limit: a test that would hang fails.
"""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

LIMIT = 5.0


def wait_for(condition: Callable[[], bool], timeout: float = LIMIT, what: str = "it") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.002)


@dataclass
class Server:
    url: str
    loop: Any = None  # the asyncio loop of an ASGI server
    made: Any = None  # what make_app gave beside the app, on gevent
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def serve_asgi(app: Any) -> Iterator[Server]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1, interface="asgi3",
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", loop=loop)
    finally:
        server.should_exit = True
        thread.join(LIMIT)
        assert not thread.is_alive(), "uvicorn did not stop"
        loop.close()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's output."""


@contextmanager
def serve_wsgi_threaded(app: Any) -> Iterator[Server]:
    server = _ThreadingWSGIServer(("127.0.0.1", 0), _QuietHandler)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(LIMIT)


@contextmanager
def serve_wsgi_gevent(make_app: Callable[[], tuple[Any, Any]]) -> Iterator[Server]:
    """``make_app()`` runs in the server's hub thread and gives ``(app, made)``."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        import gevent.event
        from gevent import get_hub
        from gevent.pywsgi import WSGIServer as GeventWSGIServer

        hub = get_hub()
        stop = gevent.event.Event()
        watcher = hub.loop.async_()
        watcher.start(stop.set)
        try:
            app, box["made"] = make_app()
            server = GeventWSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
            server.start()
            box["port"], box["watcher"] = server.server_port, watcher
        finally:
            ready.set()
        stop.wait()
        server.stop(timeout=1)
        watcher.close()
        hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(LIMIT) and "port" in box, "the gevent server did not start"
    try:
        yield Server(f"http://127.0.0.1:{box['port']}", made=box["made"])
    finally:
        box["watcher"].send()
        thread.join(LIMIT)


# -- reading an event stream ----------------------------------------------------------


@dataclass
class Event:
    event: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None

    @property
    def json(self) -> Any:
        import json

        return json.loads("\n".join(self.data))


def read_event(lines: Iterator[str]) -> Event | None:
    """The next block of the stream (up to a blank line); None at the end of the response."""
    event = Event()
    seen = False
    for line in lines:
        if line == "":
            if seen:
                return event
            continue
        seen = True
        if line.startswith(":"):
            event.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            event.data.append(value)
        elif name in ("event", "id", "retry"):
            setattr(event, name, value)
    return event if seen else None


def read_events(lines: Iterator[str], count: int) -> list[Event]:
    """The next ``count`` events that have a name (the retry block and heartbeats are skipped)."""
    found: list[Event] = []
    while len(found) < count:
        event = read_event(lines)
        assert event is not None, f"the stream ended after {found}"
        if event.event is not None:
            found.append(event)
    return found


def read_rest(lines: Iterator[str]) -> list[Event]:
    """Every named event up to the end of the response."""
    found: list[Event] = []
    while (event := read_event(lines)) is not None:
        if event.event is not None:
            found.append(event)
    return found
