"""The live inspector page: every runner of the process, as ``coflow.inspect()`` sees it.

``inspector_wsgi()`` and ``inspector_asgi()`` (exported by ``coflow.web``) serve,
under wherever they are mounted:

- ``/``: the page (``static/coflow-inspector.html``), which draws the runner tree
  and follows it live;
- ``/snapshot``: server-sent events, one ``snapshot`` event (the snapshot as
  JSON) at once and another whenever it changed, checked every ``interval``
  seconds;
- ``/runner/<id>``: one runner as JSON: what the snapshot says of it, its state
  (a longer repr), and its history if a ``HistoryRecorder`` was given.

A snapshot is taken by polling, not by hooks, so a page open costs nothing to
the flows between two looks.
"""

from __future__ import annotations

import dataclasses
import json
import reprlib
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from importlib import resources
from typing import Any

from ._history import HistoryRecorder
from ._inspect import inspect
from ._instrument import live_runners

PAGE_NAME = "coflow-inspector.html"
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]
_STATE = reprlib.Repr()
_STATE.maxstring = _STATE.maxother = 2000
_STATE.maxdict = _STATE.maxlist = 50

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def snapshot_json() -> str:
    """``coflow.inspect()`` as JSON: roots (each with its children) and supervisors."""
    return json.dumps(dataclasses.asdict(inspect()))


def runner_json(runner_id: int, history: HistoryRecorder | None) -> str | None:
    """One live runner as JSON, or None if no live runner has that id."""
    for runner in live_runners():
        if runner.id == runner_id:
            info = next((each for each in inspect().runners() if each.id == runner_id), None)
            events = [] if history is None else history.history(runner)
            detail: dict[str, Any] = {
                "info": None if info is None else dataclasses.asdict(info),
                "state": _STATE.repr(runner.get_state()),
                "history": [list(event) for event in events],
            }
            return json.dumps(detail)
    return None


class _Routes:
    """What a request to the inspector gets: the page, a runner's JSON, or the stream."""

    def __init__(self, interval: float, history: HistoryRecorder | None) -> None:
        if not interval > 0:
            raise ValueError(f"inspector: interval must be > 0 seconds, got {interval!r}")
        if history is not None and not isinstance(history, HistoryRecorder):
            raise TypeError(f"inspector: history must be a HistoryRecorder, got {history!r}")
        self.interval = float(interval)
        self.history = history

    def plain(self, path: str) -> tuple[int, str, bytes] | None:
        """``(status, content type, body)``; None for the snapshot stream."""
        tail = path.rstrip("/").rpartition("/")[2] if path.strip("/") else ""
        if path.rstrip("/").endswith("/snapshot") or path.strip("/") == "snapshot":
            return None
        if "/runner/" in path or path.startswith("runner/"):
            try:
                runner_id = int(tail)
            except ValueError:
                return 404, "text/plain; charset=utf-8", b"no such runner\n"
            body = runner_json(runner_id, self.history)
            if body is None:
                return 404, "text/plain; charset=utf-8", f"no live runner {runner_id}\n".encode()
            return 200, "application/json", body.encode()
        page = resources.files("coflow").joinpath("static").joinpath(PAGE_NAME).read_bytes()
        return 200, "text/html; charset=utf-8", page

    def changes(self) -> Iterator[bytes]:
        """The stream's events: the snapshot now, then each one that differs from the last."""
        last = None
        while True:
            current = snapshot_json()
            if current != last:
                last = current
                yield f"event: snapshot\ndata: {current}\n\n".encode()
            else:
                yield b": unchanged\n\n"


def inspector_wsgi(*, interval: float = 0.5, history: HistoryRecorder | None = None) -> Any:
    """The inspector as a WSGI app; its stream blocks its worker (a thread, or a greenlet)."""
    routes = _Routes(interval, history)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answer = routes.plain(environ.get("PATH_INFO", "/"))
        if answer is not None:
            status, content_type, body = answer
            reason = "OK" if status == 200 else "Not Found"
            start_response(f"{status} {reason}", [("Content-Type", content_type)])
            return [body]
        start_response("200 OK", list(STREAM_HEADERS))
        return _paced(routes.changes(), routes.interval)

    return app


def _paced(events: Iterator[bytes], interval: float) -> Iterator[bytes]:
    pause = threading.Event()  # never set: a wait of ``interval``, gevent-patched or not
    for event in events:
        yield event
        pause.wait(interval)


def inspector_asgi(*, interval: float = 0.5, history: HistoryRecorder | None = None) -> Any:
    """The inspector as an ASGI app; its stream ends when the client goes."""
    routes = _Routes(interval, history)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        if scope["type"] != "http":
            return
        answer = routes.plain(scope["path"])
        if answer is not None:
            status, content_type, body = answer
            headers = [(b"content-type", content_type.encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [(name.lower().encode(), value.encode()) for name, value in STREAM_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            for event in routes.changes():
                await send({"type": "http.response.body", "body": event, "more_body": True})
                await asyncio.wait({gone}, timeout=routes.interval)
                if gone.done():
                    return
        finally:
            gone.cancel()
            await asyncio.wait({gone})
            if not gone.cancelled() and gone.exception() is not None:
                raise gone.exception()  # type: ignore[misc]

    return app


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
