"""The supervisor's lifespan in real web servers: FastAPI on uvicorn, Flask, gunicorn -k gevent.

Each app starts one flow per book with ``supervisor.start(flow, key=book)``;
stopping the server ends the lifespan, whose shutdown stops the flows with
its grace, and their cleanup (the pending push) runs.  Servers listen on
127.0.0.1, port 0 (or a free port for gunicorn); nothing sleeps to let things
settle: waits poll for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import needs_gevent

import coflow
from coflow import (
    Cancelled,
    FlowGenerator,
    Runner,
    Supervisor,
    debounce,
    get_state,
    run,
    wait_until,
)

TESTS = Path(__file__).resolve().parent


def poll(condition: Callable[[], Any], what: str, seconds: float = 5.0) -> Any:
    """``condition()`` once it is truthy; fails naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g}s")
        time.sleep(0.01)


def book_sync(pushed: list[str]) -> coflow.Flow:
    """A book's sync: an edit marks it dirty; the push waits for a quiet minute, or the stop."""

    @coflow.flow(initial_state={"book": None, "dirty": False}, name="book_sync")
    def sync() -> FlowGenerator:
        try:
            while True:
                yield wait_until(lambda s: s["dirty"])
                yield debounce(60.0)
                yield run(lambda s: pushed.append(s["book"]))
        except Cancelled:
            state = yield get_state()
            if state["dirty"]:
                yield run(lambda s: pushed.append(s["book"]))  # the pending push
            raise

    return sync


def edit(supervisor: Supervisor, sync: coflow.Flow, book: str) -> Runner:
    """What an endpoint does for an edit of ``book``: get or start its sync, mark it dirty."""
    runner = supervisor.start(sync, key=book, initial_state={"book": book, "dirty": False})
    runner.signal(lambda s: {**s, "dirty": True})
    return runner


# FastAPI on uvicorn


def test_fastapi_under_uvicorn_shuts_its_flows_down_with_the_lifespan() -> None:
    import uvicorn
    from fastapi import FastAPI

    pushed: list[str] = []
    sync = book_sync(pushed)
    supervisor = Supervisor()
    runners: dict[int, Runner] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        async with supervisor.lifespan(grace=2.0):
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/books/{book_id}/edit")
    def edit_book(book_id: str) -> dict[str, Any]:  # a def endpoint: runs in the threadpool
        runner = edit(supervisor, sync, book_id)
        runners[runner.id] = runner
        return {"runner": runner.id, "backend": runner.backend.name}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    poll(lambda: server.started, "uvicorn started")
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        first = client.post("/books/book-1/edit").json()
        second = client.post("/books/book-1/edit").json()
    assert first == second == {"runner": first["runner"], "backend": "asyncio"}
    runner = runners[first["runner"]]
    assert runner.status == "running" and pushed == []
    server.should_exit = True
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert runner.status == "stopped"
    assert pushed == ["book-1"]  # the pending push ran in the lifespan's shutdown


# Flask


def flask_app(supervisor: Supervisor, sync: coflow.Flow) -> Any:
    from flask import Flask

    app = Flask("books")

    @app.post("/books/<book_id>/edit")
    def edit_book(book_id: str) -> dict[str, Any]:
        runner = edit(supervisor, sync, book_id)
        return {"runner": runner.id, "backend": runner.backend.name}

    return app


def test_flask_under_threads_runs_the_pending_push_at_shutdown() -> None:
    from werkzeug.serving import make_server

    pushed: list[str] = []
    supervisor = Supervisor()
    app = flask_app(supervisor, book_sync(pushed))
    with supervisor.lifespan(grace=2.0):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as client:
            first = client.post("/books/book-1/edit").json()
            second = client.post("/books/book-1/edit").json()
        server.shutdown()
        thread.join(timeout=5)
        [runner] = supervisor.children()
        assert first == second == {"runner": runner.id, "backend": "threads"}
        assert pushed == []
    assert runner.status == "stopped" and pushed == ["book-1"]


@needs_gevent
def test_flask_under_gevent_runs_the_pending_push_at_shutdown() -> None:
    from gevent import get_hub
    from gevent.pywsgi import WSGIServer

    pushed: list[str] = []
    supervisor = Supervisor(backend="gevent")  # gevent has not patched threading in this process
    app = flask_app(supervisor, book_sync(pushed))
    with supervisor.lifespan(grace=2.0):
        server = WSGIServer(("127.0.0.1", 0), app, log=None)
        server.start()
        url = f"http://127.0.0.1:{server.server_port}/books/book-1/edit"

        def request() -> Any:
            return httpx.post(url).json()

        # From a native thread of the hub's pool, so the hub goes on serving meanwhile.
        first = get_hub().threadpool.spawn(request).get()
        second = get_hub().threadpool.spawn(request).get()
        server.stop()
        [runner] = supervisor.children()
        assert first == second == {"runner": runner.id, "backend": "gevent"}
        assert pushed == []
    assert runner.status == "stopped" and pushed == ["book-1"]


# Django, through the ASGI lifespan wrapper of docs/running-in-a-web-app.md


def doc_block(page: str, starts: str) -> str:
    """The ```py block of ``page`` that begins with ``starts``: the doc's code, run as shown."""
    text = (TESTS.parent / "docs" / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```py\n(.*?)```", text, re.DOTALL)
    [block] = [block for block in blocks if block.startswith(starts)]
    return block


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="django is needed")
def test_django_asgi_wrapped_in_the_lifespan_shuts_its_flows_down() -> None:
    import django
    from django.conf import settings
    from django.http import JsonResponse
    from django.urls import path

    pushed: list[str] = []
    sync = book_sync(pushed)
    asgi: dict[str, Any] = {}

    def edit_book(request: Any, book_id: str) -> JsonResponse:  # a sync view: a thread of its own
        runner = edit(asgi["supervisor"], sync, book_id)
        return JsonResponse({"runner": runner.id, "backend": runner.backend.name})

    urls = types.ModuleType("lifespan_django_urls")
    urls.urlpatterns = [path("books/<book_id>/edit", edit_book)]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls
    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["*"], SECRET_KEY="test", ROOT_URLCONF=urls.__name__)
        django.setup()
    settings.ROOT_URLCONF = urls.__name__
    exec(compile(doc_block("running-in-a-web-app.md", "# asgi.py"), "asgi.py", "exec"), asgi)

    async def serve() -> list[dict[str, Any]]:
        inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        inbox.put_nowait({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        lifespan = asyncio.create_task(asgi["application"](scope, inbox.get, send))
        while "lifespan.startup.complete" not in sent:
            await asyncio.sleep(0)  # the startup runs on this loop, in this task's turns
        transport = httpx.ASGITransport(app=asgi["application"])
        async with httpx.AsyncClient(transport=transport, base_url="http://books") as client:
            answers = [(await client.post("/books/book-1/edit")).json() for _ in range(2)]
        assert pushed == []
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, timeout=5)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        return answers

    try:
        first, second = asyncio.run(serve())
    finally:
        del sys.modules[urls.__name__]
    assert first == second and first["backend"] == "asyncio"
    assert pushed == ["book-1"]  # the lifespan's shutdown ran the pending push


# gunicorn -k gevent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def gunicorn(port: int, marker: Path) -> Iterator[subprocess.Popen[bytes]]:
    environment = {**os.environ, "COFLOW_LIFESPAN_MARKER": str(marker)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "lifespan_gunicorn_conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "lifespan_gunicorn_app:app",
        ],
        cwd=TESTS,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


def request_when_up(url: str) -> str:
    def attempt() -> str | None:
        try:
            return httpx.post(url, timeout=2).text
        except httpx.TransportError:
            return None  # not listening yet

    answer: str = poll(attempt, "gunicorn answered", seconds=10)
    return answer


@pytest.mark.skipif(
    importlib.util.find_spec("gunicorn") is None or importlib.util.find_spec("gevent") is None,
    reason="gunicorn and gevent are needed",
)
def test_gunicorn_gevent_worker_exit_runs_the_pending_push(tmp_path: Path) -> None:
    marker = tmp_path / "pushed.txt"
    port = free_port()
    with gunicorn(port, marker) as process:
        answer = request_when_up(f"http://127.0.0.1:{port}/edit/book-1")
        assert answer.endswith(" gevent"), answer
        assert not marker.exists()  # the push waits for its quiet period
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        assert process.returncode == 0, output.decode()
    assert marker.read_text(encoding="utf-8") == "pushed book-1\n", output.decode()
