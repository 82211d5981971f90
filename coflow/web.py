"""Server-sent events of a runner, for any Python web framework, with no framework imported.

``sse_asgi`` gives an ASGI 3 app (FastAPI, Starlette, Django ASGI, Quart: mount
it) and ``sse_wsgi`` a WSGI app (Flask, Django WSGI, plain WSGI) that stream a
runner's state to a browser as ``text/event-stream``; both serve the browser
module (``coflow/static/coflow-flow.js``) beside the streams.  Each response is
one ``runner.events()`` stream: the runner's current state first, then every
event, each with an id that is a digest of what it says, so a browser that
reconnects with ``Last-Event-ID`` is not sent again the state it has.

A stream that ends only when its runner does would hold a server's graceful
shutdown for its whole timeout (uvicorn and gunicorn wait for open responses
before the app's lifespan shutdown), so ``end_streams()`` ends them all, and
the first stream opened in the main thread chains it before the SIGINT and
SIGTERM handlers.  The docs are in docs/live-pages.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from importlib import resources
from types import FrameType
from typing import Any

from ._events import FlowDone, FlowError, FlowEvent, FlowRestarted, FlowState
from ._inspector_web import inspector_asgi, inspector_wsgi
from ._runner import EventStream, Runner

__all__ = [
    "end_streams",
    "inspector_asgi",
    "inspector_wsgi",
    "open_streams",
    "sse_asgi",
    "sse_wsgi",
]

logger = logging.getLogger("coflow")

Lookup = Callable[[str], Runner | None]
Target = Runner | Lookup
Encoder = Callable[[Any], str]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Any]

MODULE_NAME = "coflow-flow.js"
#: Milliseconds a browser waits before it reconnects, sent once at the start of each stream.
RETRY_MS = 2000
HEARTBEAT = b": heartbeat\n\n"
STREAM_HEADERS = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx would otherwise hold the events back
)
#: The line ends of the event-stream format: a data field is one line.
_LINE_ENDS = re.compile(r"\r\n|\r|\n")

#: Every stream being served in this process, for ``end_streams()``.  Reentrant: a signal
#: handler may call ``end_streams()`` in the main thread while it holds the lock.
_OPEN: set[EventStream] = set()
_OPEN_LOCK = threading.RLock()


def open_streams(runner: Runner) -> int:
    """How many event streams (of these apps or not) are subscribed to ``runner`` now."""
    return runner.stream_count()


def end_streams() -> None:
    """End every stream being served in this process now, for a server shutting down.

    Each sends nothing more and finishes its response.  Thread-safe, and safe in
    a signal handler.
    """
    with _OPEN_LOCK:
        streams = list(_OPEN)
    for stream in streams:
        stream.close()


# -- the stream's bytes --------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(state: Any) -> str:
    """The default encoder: ``json.dumps`` on one line, dataclasses as dicts."""
    return json.dumps(state, default=_json_default)


Frame = tuple[str, bytes]  # an event's id, and the event as bytes


class _Framing:
    """Events as event-stream bytes, for every response of one app.

    An event's id is the runner's id and a digest of the event's name and data,
    so the id the snapshot would have is known without keeping anything between
    requests.  The event last framed is kept: the subscribers of a runner are
    sent the same events, so each is encoded (and its encoding error logged)
    once, not once per subscriber.
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.last: tuple[FlowEvent, list[Frame], bool] | None = None

    def event(self, event: FlowEvent) -> tuple[list[Frame], bool]:
        """``event``'s frames, and whether it was the runner's final one."""
        last = self.last  # one read: another thread may replace it meanwhile
        if last is not None and last[0] is event:
            return last[1], last[2]
        runner = event.runner
        if isinstance(event, FlowState):
            framed = self.state(runner, "FlowState", event.state), False
        elif isinstance(event, FlowDone):
            framed = self.state(runner, "FlowDone", event.state), True
        elif isinstance(event, FlowError):
            framed = [self.frame(runner, "FlowError", _error_data(event.reason))], True
        elif isinstance(event, FlowRestarted):
            reason = event.reason
            said = None if reason is None else f"{type(reason).__name__}: {reason}"
            framed = [self.frame(runner, "FlowRestarted", json.dumps({"reason": said}))], False
        else:
            raise TypeError(f"not a flow event: {event!r}")
        self.last = (event, *framed)
        return framed

    def state(self, runner: Runner, name: str, state: Any) -> list[Frame]:
        """A FlowState or FlowDone; a state that will not encode is an EncodeError instead."""
        try:
            data = self.encoder(state)
            if not isinstance(data, str):
                raise TypeError(f"the encoder returned {type(data).__name__}, not str")
        except Exception as error:  # reported to the log and to the browser, then streamed on
            message = f"state of flow {runner.name!r} cannot be encoded as JSON: {error}"
            logger.error("%s (%s)", message, type(state).__name__, exc_info=error)
            said = json.dumps({"error": type(error).__name__, "message": message})
            frames = [self.frame(runner, "EncodeError", said)]
            if name == "FlowDone":  # still said, so the browser does not reconnect
                frames.append(self.frame(runner, name, "null"))
            return frames
        return [self.frame(runner, name, data)]

    @staticmethod
    def frame(runner: Runner, name: str, data: str) -> Frame:
        digest = hashlib.sha1(f"{name}\n{data}".encode(), usedforsecurity=False).hexdigest()
        event_id = f"{runner.id}-{digest[:16]}"
        lines = [f"event: {name}", f"id: {event_id}"]
        lines.extend(f"data: {line}" for line in _LINE_ENDS.split(data))
        return event_id, ("\n".join(lines) + "\n\n").encode()


class _Feed:
    """What one response says: the runner's current state, then each event.

    A frame whose id is the last the browser has (``Last-Event-ID``, or the
    frame just sent: the snapshot raced with the stream) is not sent.
    """

    def __init__(self, runner: Runner, framing: _Framing, last_event_id: str | None) -> None:
        self.runner = runner
        self.framing = framing
        self.last_id = last_event_id

    def opening(self) -> tuple[bytes, bool]:
        """The retry interval and the runner's current state; True when that was all."""
        runner = self.runner
        framing = self.framing
        head = f"retry: {RETRY_MS}\n\n".encode()
        status = runner.status
        if status == "done":
            return head + self._new(framing.state(runner, "FlowDone", runner.get_state())), True
        if status == "stopped":
            return head + self._new([framing.frame(runner, "FlowStopped", "null")]), True
        error = runner.error
        if status == "failed" and error is not None:
            return head + self._new([framing.frame(runner, "FlowError", _error_data(error))]), True
        # Running (or failing this very moment: then the stream holds the FlowError).
        return head + self._new(framing.state(runner, "FlowState", runner.get_state())), False

    def event(self, event: FlowEvent) -> tuple[bytes, bool]:
        """``event`` as bytes; True when it was the runner's final one."""
        frames, final = self.framing.event(event)
        return self._new(frames), final

    def ending(self) -> bytes:
        """The runner ended with no final event: it was stopped."""
        return self._new([self.framing.frame(self.runner, "FlowStopped", "null")])

    def _new(self, frames: list[Frame]) -> bytes:
        """The frames the browser does not have already."""
        said = b""
        for event_id, frame in frames:
            if event_id != self.last_id:
                said += frame
                self.last_id = event_id
        return said


def _error_data(error: BaseException) -> str:
    return json.dumps({"error": type(error).__name__, "message": str(error)})


# -- routing, shared by both apps --------------------------------------------------------


class _Plain:
    """A response that is not a stream: the browser module, or an error."""

    def __init__(self, status: int, reason: str, content_type: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if status == 405:
            self.headers.append(("Allow", "GET"))
        self.body = body


_browser_module: list[bytes] = []


def _module_response() -> _Plain:
    if not _browser_module:
        source = resources.files("coflow").joinpath("static").joinpath(MODULE_NAME).read_bytes()
        _browser_module.append(source)
    return _Plain(200, "OK", "text/javascript; charset=utf-8", _browser_module[0])


class _Options:
    """What ``sse_asgi`` and ``sse_wsgi`` were given, checked once."""

    def __init__(
        self, target: Target, encoder: Encoder | None, heartbeat: float, maxsize: int
    ) -> None:
        if not isinstance(target, Runner) and not callable(target):
            raise TypeError(f"target must be a coflow.Runner or a lookup callable, got {target!r}")
        if encoder is not None and not callable(encoder):
            raise TypeError(f"encoder must be a callable state -> str, got {encoder!r}")
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)):
            raise TypeError(f"heartbeat must be a number of seconds, got {heartbeat!r}")
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat!r}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
        self.target = target
        self.framing = _Framing(encode_json if encoder is None else encoder)
        self.heartbeat = float(heartbeat)
        self.maxsize = maxsize
        #: The streams this app is serving; ``_OPEN`` has every app's.
        self.streams: set[EventStream] = set()

    def route(self, method: str, path: str) -> Runner | _Plain:
        """The runner a request streams, or the plain response it gets."""
        if method != "GET":
            return _Plain(405, "Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n")
        if path.endswith("/" + MODULE_NAME) or path == MODULE_NAME:
            return _module_response()
        target = self.target
        if isinstance(target, Runner):
            return target
        key = path.rstrip("/").rpartition("/")[2]
        runner = target(key)
        if runner is None:
            body = f"no flow {key!r}\n".encode()
            return _Plain(404, "Not Found", "text/plain; charset=utf-8", body)
        if not isinstance(runner, Runner):
            raise TypeError(f"the lookup of {key!r} gave {runner!r}, not a coflow.Runner or None")
        return runner

    def open(self, runner: Runner, last_event_id: str | None) -> tuple[EventStream, _Feed]:
        """Subscribe first, then read the snapshot: no event between the two is missed."""
        stream = runner.events(maxsize=self.maxsize)
        with _OPEN_LOCK:
            _OPEN.add(stream)
            self.streams.add(stream)
        _chain_shutdown_signals()
        return stream, _Feed(runner, self.framing, last_event_id)

    def forget(self, stream: EventStream) -> None:
        """The response of ``stream`` is over: close it and let it go."""
        stream.close()
        with _OPEN_LOCK:
            _OPEN.discard(stream)
            self.streams.discard(stream)

    def end_streams(self) -> None:
        """End this app's streams (at its lifespan's shutdown), and no other app's."""
        with _OPEN_LOCK:
            streams = list(self.streams)
        for stream in streams:
            stream.close()


# -- the shutdown hook -------------------------------------------------------------------

_SHUTDOWN_SIGNALS = ("SIGINT", "SIGTERM")


class _EndStreamsFirst:
    """A signal handler that ends the open streams, then does what the one before it did."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        end_streams()
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not set from Python
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _chain_shutdown_signals() -> None:
    """In the main thread, put ``end_streams()`` before the SIGINT and SIGTERM handlers.

    Done at each stream's start, after the server has installed its own
    handlers (uvicorn does as it starts serving), and again whenever a handler
    has been replaced since.  Elsewhere than in the main thread (which under
    gevent's monkey-patching ``threading`` cannot tell) ``signal.signal``
    refuses, and the streams are left to ``end_streams()``.
    """
    for name in _SHUTDOWN_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        current = signal.getsignal(signum)
        if isinstance(current, _EndStreamsFirst):
            continue
        try:
            signal.signal(signum, _EndStreamsFirst(current))
        except ValueError:  # "signal only works in main thread of the main interpreter"
            return
        logger.debug("coflow.web: %s now ends the open event streams first", name)


# -- ASGI ------------------------------------------------------------------------------


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def sse_asgi(
    target: Target, *, encoder: Encoder | None = None, heartbeat: float = 15.0, maxsize: int = 64
) -> AsgiApp:
    """An ASGI 3 app streaming ``target`` (a runner, or ``lookup(key)`` of the last path segment).

    Mount it: ``app.mount("/flows", coflow.web.sse_asgi(lookup))``.
    """
    options = _Options(target, encoder, heartbeat, maxsize)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(options, receive, send)
            return
        if kind != "http":
            raise ValueError(f"coflow.web.sse_asgi serves http requests, not {kind!r}")
        routed = options.route(scope["method"], scope["path"])
        if isinstance(routed, _Plain):
            headers = [(name.lower().encode(), value.encode()) for name, value in routed.headers]
            await send({"type": "http.response.start", "status": routed.status, "headers": headers})
            await send({"type": "http.response.body", "body": routed.body})
            return
        await _stream_asgi(options, routed, _header(scope, b"last-event-id"), receive, send)

    return app


async def _lifespan(options: _Options, receive: Receive, send: Send) -> None:
    """Served alone (not mounted), the app has nothing to start and ends its streams at shutdown.

    Its own streams only: another app of the process (another server's) serves on.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            options.end_streams()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _stream_asgi(
    options: _Options, runner: Runner, last_event_id: str | None, receive: Receive, send: Send
) -> None:
    import asyncio  # here, not at import: a WSGI server under gevent never needs it

    stream, feed = options.open(runner, last_event_id)
    gone: list[bool] = []
    watcher = asyncio.ensure_future(_watch_disconnect(receive, stream, gone))
    try:
        headers = [(name.lower().encode(), value.encode()) for name, value in STREAM_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunk, over = feed.opening()
        while True:
            if chunk and not gone:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if over:
                break
            event = await stream.anext_event(options.heartbeat)
            if event is not None:
                chunk, over = feed.event(event)
            elif not stream.finished:
                chunk = HEARTBEAT
            else:  # closed (a disconnect, end_streams), or the runner was stopped
                chunk, over = (b"" if stream.closed else feed.ending()), True
        if not gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        options.forget(stream)
        watcher.cancel()
        await asyncio.wait({watcher})
        if not watcher.cancelled() and watcher.exception() is not None:
            logger.error(
                "coflow.web: receive() of a stream of flow %r raised",
                runner.name,
                exc_info=watcher.exception(),
            )


async def _watch_disconnect(receive: Receive, stream: EventStream, gone: list[bool]) -> None:
    """Close ``stream`` the moment the client goes: the runner keeps nothing of it."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.append(True)
            stream.close()
            return


# -- WSGI ------------------------------------------------------------------------------


def sse_wsgi(
    target: Target, *, encoder: Encoder | None = None, heartbeat: float = 15.0, maxsize: int = 64
) -> WsgiApp:
    """A WSGI app streaming ``target`` (a runner, or ``lookup(key)`` of PATH_INFO's last segment).

    It blocks its worker while it streams (a thread, or a greenlet under gevent).
    """
    options = _Options(target, encoder, heartbeat, maxsize)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        routed = options.route(environ["REQUEST_METHOD"], path)
        if isinstance(routed, _Plain):
            start_response(f"{routed.status} {routed.reason}", routed.headers)
            return [routed.body]
        stream, feed = options.open(routed, environ.get("HTTP_LAST_EVENT_ID"))
        start_response("200 OK", list(STREAM_HEADERS))
        return _WsgiStream(options, stream, feed)

    return app


class _WsgiStream:
    """The body of a WSGI stream; ``close()`` (a server's, at a disconnect) unsubscribes at once."""

    def __init__(self, options: _Options, stream: EventStream, feed: _Feed) -> None:
        self._options = options
        self._stream = stream
        self._feed = feed
        self._heartbeat = options.heartbeat

    def __iter__(self) -> Iterator[bytes]:
        stream = self._stream
        try:
            chunk, over = self._feed.opening()
            yield chunk
            while not over:
                event = stream.next_event(self._heartbeat)
                if event is not None:
                    chunk, over = self._feed.event(event)
                    if chunk:
                        yield chunk
                elif not stream.finished:
                    yield HEARTBEAT
                else:
                    if not stream.closed:
                        yield self._feed.ending()
                    return
        finally:
            self._options.forget(stream)

    def close(self) -> None:
        self._options.forget(self._stream)
