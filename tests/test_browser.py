"""The live book pages in a real browser (Debian's chromium, driven by Playwright), and the
htmx variant's stream over HTTP.

Each example app (FastAPI under uvicorn, Flask under gevent.pywsgi) is served on
127.0.0.1; the page is opened, a title saved through its form, and the page must
show "Syncing…" and then "Synced ✓" as the book's flow runs.  An edit saved
while the push runs is pushed after it.  Closing the page unsubscribes its
stream from the runner.  A screenshot of each page is kept in the artifacts
folder (``COFLOW_TEST_ARTIFACTS``, by default ``test-artifacts/`` in the working
directory).

Where no browser can be started the tests skip, saying why; with
``COFLOW_REQUIRE_BROWSER=1`` (as CI sets) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_gevent
from web_servers import wait_for

import coflow
import coflow.web

pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

SYNCING, SYNCED = "Syncing…", "Synced ✓"
#: How long the page may take to show a status: a busy 2-core machine, a real browser.
SHOWN_WITHIN_MS = 10_000


def _chromium_path() -> str | None:
    return os.environ.get("COFLOW_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = _chromium_path()
    required = os.environ.get("COFLOW_REQUIRE_BROWSER") == "1"
    if path is None:
        reason = "no chromium on PATH (apt install chromium, or set COFLOW_CHROMIUM)"
        if required:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with playwright_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=path, headless=True, args=["--no-sandbox"]
            )
        except playwright_api.Error as error:
            if required:
                raise
            pytest.skip(f"chromium at {path} does not start: {error}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("COFLOW_TEST_ARTIFACTS", "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


Served = tuple[str, coflow.Supervisor]


@pytest.fixture
def fastapi_app() -> Iterator[Served]:
    import uvicorn

    from examples.fastapi_books import create_app

    app = create_app(quiet=0.1, push_seconds=0.6)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10.0, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app.state.supervisor
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def flask_gevent_app() -> Iterator[Served]:
    pytest.importorskip("flask")
    started = threading.Event()
    serving: dict[str, Any] = {}

    def serve() -> None:
        from gevent import get_hub
        from gevent.pywsgi import WSGIServer

        from examples.flask_books import create_app

        supervisor = coflow.Supervisor(backend="gevent")
        with supervisor.lifespan(grace=1.0):
            server = WSGIServer(
                ("127.0.0.1", 0),
                create_app(supervisor, quiet=0.1, push_seconds=0.6, heartbeat=0.1),
                log=None,
            )
            server.start()
            serving.update(server=server, supervisor=supervisor, hub=get_hub())
            started.set()
            server.serve_forever()

    thread = threading.Thread(target=serve, name="gevent-server", daemon=True)
    thread.start()
    assert started.wait(10), "the gevent server did not start"
    try:
        yield f"http://127.0.0.1:{serving['server'].server_port}", serving["supervisor"]
    finally:
        serving["hub"].loop.run_callback_threadsafe(serving["server"].stop, 1)
        thread.join(10)


def _check_the_book_page(
    browser: Any, base: str, supervisor: coflow.Supervisor, shot: Path
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    page.goto(f"{base}/books/b-1")
    status = page.locator("#status")
    expect(status).to_have_text("Ready", timeout=SHOWN_WITHIN_MS)

    page.fill("#new-title", "Dune")
    page.click("button[type=submit]")
    expect(status).to_have_text(SYNCING, timeout=SHOWN_WITHIN_MS)
    page.fill("#new-title", "Dune Messiah")  # saved while the push runs: kept, pushed after it
    page.click("button[type=submit]")
    expect(page.locator("#synced")).to_have_text("2", timeout=SHOWN_WITHIN_MS)
    expect(status).to_have_text(SYNCED, timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#title")).to_have_text("Dune Messiah")

    runner = supervisor.get("b-1")
    assert runner is not None
    assert runner.get_state()["title"] == "Dune Messiah"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    assert status.is_visible()  # the screenshot shows the status it was taken for
    assert coflow.web.open_streams(runner) == 1

    page.close()
    wait_for(lambda: coflow.web.open_streams(runner) == 0, 10.0, "the closed page's stream to end")


def test_the_fastapi_book_page_shows_each_sync_live(
    browser: Any, fastapi_app: Served, artifacts: Path
) -> None:
    base, supervisor = fastapi_app
    _check_the_book_page(browser, base, supervisor, artifacts / "fastapi-book-page.png")


@needs_gevent
def test_the_flask_gevent_book_page_shows_each_sync_live(
    browser: Any, flask_gevent_app: Served, artifacts: Path
) -> None:
    base, supervisor = flask_gevent_app
    _check_the_book_page(browser, base, supervisor, artifacts / "flask-gevent-book-page.png")


def test_the_htmx_page_is_sent_its_status_as_html_fragments(fastapi_app: Served) -> None:
    """htmx's ``sse`` extension swaps each ``FlowState`` event's data in: here, an HTML fragment."""
    import httpx

    base, _ = fastapi_app
    with httpx.Client(base_url=base, timeout=SHOWN_WITHIN_MS / 1000) as client:
        page = client.get("/books/b-2/htmx")
        assert 'sse-connect="/fragments/b-2"' in page.text
        with client.stream("GET", "/fragments/b-2") as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: FlowState"
            assert next(line for line in lines if line.startswith("data:")) == (
                'data: <span id="status">Ready</span>'
            )
            client.post("/books/b-2/edit", json={"title": "Emma"})
            assert next(line for line in lines if line.startswith("data:")) == (
                'data: <span id="status">Edited</span>'
            )
