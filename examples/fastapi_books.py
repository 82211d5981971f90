"""Live book pages on FastAPI: one debounced-sync flow per book, its status pushed to the page.

Run it with ``python -m examples.fastapi_books`` and open http://127.0.0.1:8000/books/b-1
(or ``/books/b-1/htmx``, the same status with htmx's ``sse`` extension, which swaps in the
HTML fragment each event carries).
Each save sends an edit to the book's flow; the page shows "Syncing…" and then
"Synced ✓" as the flow's state changes, through ``coflow.web``'s event stream.
The supervisor's lifespan stops every flow, with a grace, when the server stops;
flows started from ``def`` endpoints (FastAPI's worker threads) run on the app's
loop, because the lifespan installed the supervisor there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Body, FastAPI
from fastapi.responses import HTMLResponse

import coflow
import coflow.web
from examples.book_pages import (
    BookState,
    book_sync,
    edited,
    htmx_page,
    new_book,
    page,
    push_result,
    status_fragment,
)


def create_app(quiet: float = 0.5, push_seconds: float = 0.8) -> FastAPI:
    """The app; ``quiet`` is the debounce window, ``push_seconds`` how long a push takes."""
    supervisor = coflow.Supervisor()

    async def push(state: BookState) -> Any:
        await asyncio.sleep(push_seconds)  # the remote API call, e.g. with httpx
        return push_result()

    flow = book_sync(push, quiet)

    def book(book_id: str) -> coflow.Runner:
        return supervisor.start(flow, key=book_id, initial_state=new_book(book_id))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with supervisor.lifespan(grace=2.0):
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.supervisor = supervisor

    @app.get("/books/{book_id}", response_class=HTMLResponse)
    def show(book_id: str) -> str:
        book(book_id)  # the page's stream has a flow to read from the start
        return page(book_id)

    @app.post("/books/{book_id}/edit")
    def edit(book_id: str, title: str = Body(..., embed=True)) -> dict[str, str]:
        book(book_id).signal(edited(title))
        return {"status": "accepted"}

    @app.get("/books/{book_id}/htmx", response_class=HTMLResponse)
    def show_with_htmx(book_id: str) -> str:
        book(book_id)
        return htmx_page(book_id)

    app.mount("/flows", coflow.web.sse_asgi(supervisor.get))  # JSON, for <coflow-flow>
    app.mount("/fragments", coflow.web.sse_asgi(supervisor.get, encoder=status_fragment))
    return app


def main() -> None:
    import uvicorn

    port = int(os.environ.get("PORT", "8000"))
    uvicorn.run(create_app(), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
