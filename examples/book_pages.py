"""The book-sync flow behind the live book pages, and the page itself.

One flow per book, started on the first edit (``supervisor.start(..., key=book_id)``).
Its state says what the page shows: ``"Ready"``, ``"Edited"`` while edits keep
coming, ``"Syncing…"`` while the push runs, ``"Synced ✓"`` once it is done.
The push ends with ``Update``, so an edit made while it runs is kept, and pushed
after it.  ``examples.fastapi_books`` and ``examples.flask_books`` serve it, each
on its own stack; only the push differs (``await`` on asyncio, a blocking call
under gevent).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from typing import Any

from coflow import Update, debounce, run, set_state, wait_until

BookState = dict[str, Any]

READY, EDITED, SYNCING, SYNCED = "Ready", "Edited", "Syncing…", "Synced ✓"


def new_book(book_id: str) -> BookState:
    return {"book_id": book_id, "title": "", "dirty": False, "status": READY, "synced": 0}


def edited(title: str) -> Callable[[BookState], BookState]:
    """The signal an edit sends: the new title, and a book to push."""
    return lambda state: {**state, "title": title, "dirty": True, "status": EDITED}


def synced(state: BookState) -> BookState:
    """The push's ``Update``: clean, unless an edit came in while it ran."""
    if state["dirty"] == "processing":
        return {**state, "dirty": False, "status": SYNCED, "synced": state["synced"] + 1}
    return {**state, "synced": state["synced"] + 1}  # edited meanwhile: pushed again


def book_sync(push: Callable[[BookState], Any], quiet: float) -> Callable[[], Iterator[Any]]:
    """The flow of one book: after ``quiet`` seconds without an edit, ``push`` it."""

    def flow() -> Iterator[Any]:
        while True:
            yield wait_until(lambda state: state["dirty"] is True)
            yield debounce(quiet)
            yield set_state(lambda state: {**state, "dirty": "processing", "status": SYNCING})
            yield run(push, retries=3, backoff="exponential", base_delay=0.2)

    return flow


def push_result() -> Update[BookState]:
    """What a push gives back once the remote side has the book."""
    return Update(synced)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Book {book_id}</title>
<script type="module" src="/flows/coflow-flow.js"></script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 3rem; }}
#status {{ font-size: 1.5rem; font-weight: 600; }}
</style>
</head>
<body>
<h1>Book {book_id}</h1>
<coflow-flow id="book" src="/flows/{book_id}"></coflow-flow>
<p>Status: <span id="status">Connecting…</span></p>
<p>Title: <span id="title"></span> (pushed <span id="synced">0</span> times)</p>
<form id="edit">
  <input id="new-title" name="title" value="Dune" aria-label="title">
  <button type="submit">Save</button>
</form>
<script type="module">
const book = document.getElementById("book");
book.addEventListener("coflow-state", (event) => {{
  document.getElementById("status").textContent = event.detail.status;
  document.getElementById("title").textContent = event.detail.title;
  document.getElementById("synced").textContent = event.detail.synced;
}});
document.getElementById("edit").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const title = document.getElementById("new-title").value;
  await fetch("/books/{book_id}/edit", {{
    method: "POST",
    headers: {{ "Content-Type": "application/json" }},
    body: JSON.stringify({{ title }}),
  }});
}});
</script>
</body>
</html>
"""


def page(book_id: str) -> str:
    """The book's page: its status, live from the flow's event stream, and an edit form."""
    return PAGE.format(book_id=html.escape(book_id))


def status_fragment(state: BookState) -> str:
    """The book's status as the HTML that htmx's ``sse`` extension swaps into the page."""
    return f'<span id="status">{html.escape(state["status"])}</span>'


HTMX_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Book {book_id}</title>
<script src="https://unpkg.com/htmx.org@2.0.4"></script>
<script src="https://unpkg.com/htmx-ext-sse@2.2.2/sse.js"></script>
</head>
<body>
<h1>Book {book_id}</h1>
<p hx-ext="sse" sse-connect="/fragments/{book_id}" sse-swap="FlowState" sse-close="FlowDone">
  <span id="status">Connecting…</span>
</p>
</body>
</html>
"""


def htmx_page(book_id: str) -> str:
    """The same status with htmx: each ``FlowState`` event's data is the fragment to show."""
    return HTMX_PAGE.format(book_id=html.escape(book_id))
