"""The inspector page, served by ``python -m coflow demo --web``, in Debian's chromium.

The demo's flows run (over and over) while the page is open: their runners appear, the
tree follows them live, and a click shows a runner's state and history.  A screenshot is
kept in the artifacts folder, as in tests/test_browser.py, whose browser fixture is shared.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import SHOWN_WITHIN_MS, artifacts, browser  # noqa: F401 - fixtures

from coflow._demo_web import serve_demo_web

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def demo_web() -> Iterator[str]:
    servers: list[Any] = []
    started = threading.Event()

    def ready(server: Any) -> None:
        servers.append(server)
        started.set()

    thread = threading.Thread(
        target=serve_demo_web,
        kwargs={"port": 0, "out": io.StringIO(), "ready": ready},
        name="demo-web",
        daemon=True,
    )
    thread.start()
    assert started.wait(10), "the inspector did not start"
    try:
        yield f"http://127.0.0.1:{servers[0].server_port}"
    finally:
        servers[0].shutdown()
        thread.join(15)


def test_the_inspector_shows_the_demos_runners_live(
    browser: Any,  # noqa: F811
    demo_web: str,
    artifacts: Path,  # noqa: F811
) -> None:
    expect = playwright_api.expect
    page = browser.new_page()
    page.goto(demo_web + "/")
    book = page.locator(".row", has=page.locator(".name", has_text="sync_book")).first
    expect(book).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#summary")).to_contain_text("live runners")

    tree = page.locator("#tree")
    before = tree.inner_text()
    page.wait_for_function(
        "(before) => document.getElementById('tree').innerText !== before",
        arg=before,
        timeout=SHOWN_WITHIN_MS,
    )  # a status, a step or a wait changed: the page follows the flows

    book = page.locator(".row", has=page.locator(".name", has_text="sync_book")).first
    book.click()
    expect(page.locator("#state")).to_contain_text("book_id", timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#detail table tr").first).to_be_visible()
    shot = artifacts / "inspector.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    page.close()
