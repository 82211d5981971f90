"""coflow.web: server-sent events of one runner fanned out to many subscribers, and their memory.

The ASGI app (``coflow.web.sse_asgi``) is called directly on one asyncio loop
by ``subscribers`` in-memory clients (a ``receive`` that never disconnects, a
``send`` that counts the events in what it is given), and the WSGI app
(``coflow.web.sse_wsgi``) by as many greenlets of one gevent hub, each iterating
its response body: no server and no socket, so the figures are coflow's side
alone, the event streams and their framing.

- fan-out: the runner (on ``AsyncioBackend``, or ``GeventBackend`` for WSGI)
  takes ``events`` signals, each a new state, then ends; every subscriber gets
  each state and the ``FlowDone``.
  Timed from the first signal until every response has ended.  Figure: events
  delivered per second (events x subscribers / seconds).
- memory: ``tracemalloc``'s traced bytes with ``subscribers`` streams open and
  waiting (each a response task and its disconnect watcher, its stream and the
  runner's buffer for it), less those before, per stream.

There is no peer and no target: the lines are printed for their figures.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import coflow
import coflow.web
from coflow import wait_until
from coflow.backends.asyncio import AsyncioBackend

from . import Row, Target, best_of

NO_TARGET = Target("ratio", 0.0, False, "none")
SCOPE = {"type": "http", "method": "GET", "path": "/flows/bench", "headers": []}


class Clients:
    """``count`` in-memory ASGI clients of ``app``, each counting the events it is sent."""

    def __init__(self, app: Callable[..., Awaitable[None]], count: int) -> None:
        self.app = app
        self.count = count
        self.events = [0] * count
        self.opened = 0
        self.all_open = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.ensure_future(self.follow(i)) for i in range(self.count)]

    async def follow(self, i: int) -> None:
        never = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            body = message.get("body")
            if body:
                if b"retry:" in body:
                    self.opened += 1
                    if self.opened == self.count:
                        self.all_open.set()
                self.events[i] += body.count(b"\nevent: ") + body.startswith(b"event: ")

        await self.app(SCOPE, receive, send)


def _counting_flow(events: int) -> Any:
    return wait_until(lambda s: s >= events)


async def _fan_out(subscribers: int, events: int) -> float:
    backend = AsyncioBackend(asyncio.get_running_loop())
    runner = coflow.start(_counting_flow(events), initial_state=0, backend=backend, supervisor=None)
    app = coflow.web.sse_asgi(runner, heartbeat=3600.0, maxsize=events + 2)
    clients = Clients(app, subscribers)
    clients.start()
    await clients.all_open.wait()
    started = perf_counter()
    for _ in range(events):
        runner.signal(lambda s: s + 1)
    await asyncio.gather(*clients.tasks)
    took = perf_counter() - started
    expected = 1 + events + 1  # the snapshot, each state, FlowDone
    if clients.events != [expected] * subscribers:
        got = sorted(set(clients.events))
        raise RuntimeError(f"web bench: subscribers got {got} events, not {expected}")
    return took


async def _memory(subscribers: int) -> float:
    backend = AsyncioBackend(asyncio.get_running_loop())
    runner = coflow.start(_counting_flow(1), initial_state=0, backend=backend, supervisor=None)
    app = coflow.web.sse_asgi(runner, heartbeat=3600.0)
    clients = Clients(app, subscribers)
    await asyncio.sleep(0)  # the flow's first step, before the count starts
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        clients.start()
        await clients.all_open.wait()
        await asyncio.sleep(0)  # every response now waits in its stream
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    if coflow.web.open_streams(runner) != subscribers:
        raise RuntimeError("web bench: not every stream is open")
    runner.signal(lambda s: 1)
    await asyncio.gather(*clients.tasks)
    return used / subscribers


ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/flows/bench"}


def _fan_out_wsgi_gevent(subscribers: int, events: int) -> float:
    """The fan-out through the WSGI app, each subscriber a greenlet reading its body."""
    import gevent

    from coflow.backends.gevent import GeventBackend

    backend = GeventBackend()
    runner = coflow.start(_counting_flow(events), initial_state=0, backend=backend, supervisor=None)
    app = coflow.web.sse_wsgi(runner, heartbeat=3600.0, maxsize=events + 2)
    counts = [0] * subscribers

    def follow(i: int) -> None:
        for chunk in app(dict(ENVIRON), lambda status, headers: None):
            counts[i] += chunk.count(b"event: ")

    readers = [gevent.spawn(follow, i) for i in range(subscribers)]
    while coflow.web.open_streams(runner) < subscribers:
        gevent.sleep(0)  # every reader has read its snapshot and waits in its stream
    started = perf_counter()
    for _ in range(events):
        runner.signal(lambda s: s + 1)
    gevent.joinall(readers, raise_error=True)
    took = perf_counter() - started
    backend.close()
    expected = 1 + events + 1
    if counts != [expected] * subscribers:
        got = sorted(set(counts))
        raise RuntimeError(f"web bench: WSGI readers got {got} events, not {expected}")
    return took


def _have_gevent() -> bool:
    try:
        import gevent  # noqa: F401
    except ImportError:
        return False
    return True


def measure(subscribers: int, events: int, repeats: int) -> list[Row]:
    best = best_of(repeats, {"coflow": lambda: asyncio.run(_fan_out(subscribers, events))})
    per_stream = asyncio.run(_memory(subscribers))
    where = f"ASGI app called in memory, asyncio: {subscribers:,} subscribers"
    rows = [
        Row(f"web: SSE fan-out, {where} x {events:,} events", "events/s",
            subscribers * events / best["coflow"], "—", None, NO_TARGET),
        Row(f"web: memory per open SSE stream, {where} (tracemalloc)", "bytes/stream",
            per_stream, "—", None, NO_TARGET),
    ]
    wsgi = f"WSGI app read in memory, gevent: {subscribers:,} subscribers x {events:,} events"
    if _have_gevent():
        wsgi_best = best_of(repeats, {"coflow": lambda: _fan_out_wsgi_gevent(subscribers, events)})
        figure: float | None = subscribers * events / wsgi_best["coflow"]
    else:
        figure, wsgi = None, wsgi + " (gevent not installed)"
    rows.append(Row(f"web: SSE fan-out, {wsgi}", "events/s", figure, "—", None, NO_TARGET))
    return rows
