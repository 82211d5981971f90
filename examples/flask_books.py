"""Live book pages on Flask under gevent: the same flow and page as ``examples.fastapi_books``.

Run it with ``python -m examples.flask_books`` and open http://127.0.0.1:8000/books/b-1.
The app is plain synchronous Flask served by ``gevent.pywsgi``: each request
is a greenlet, the flows run in the gevent hub, and a push is a blocking call
(``gevent.sleep`` here; under ``gunicorn -k gevent``, whose worker patches the
standard library, a plain HTTP client's call blocks only its greenlet too).
``coflow.web.sse_wsgi`` streams each book's flow to its page.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from flask import Flask, request

import coflow
import coflow.web
from examples.book_pages import BookState, book_sync, edited, new_book, page, push_result


def create_app(
    supervisor: coflow.Supervisor,
    quiet: float = 0.5,
    push_seconds: float = 0.8,
    heartbeat: float = 5.0,
) -> Any:
    """The WSGI app: Flask for the pages and edits, ``coflow.web`` for the streams.

    A WSGI server learns that a browser left only when a write to it fails, so
    the streams' ``heartbeat`` is also how soon a closed page is unsubscribed.
    """

    def push(state: BookState) -> Any:
        gevent.sleep(push_seconds)  # the remote API call: it blocks only its greenlet
        return push_result()

    flow = book_sync(push, quiet)

    def book(book_id: str) -> coflow.Runner:
        return supervisor.start(flow, key=book_id, initial_state=new_book(book_id))

    pages = Flask(__name__)

    @pages.get("/books/<book_id>")
    def show(book_id: str) -> str:
        book(book_id)  # the page's stream has a flow to read from the start
        return page(book_id)

    @pages.post("/books/<book_id>/edit")
    def edit(book_id: str) -> dict[str, str]:
        book(book_id).signal(edited(request.get_json()["title"]))
        return {"status": "accepted"}

    streams = coflow.web.sse_wsgi(supervisor.get, heartbeat=heartbeat)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/flows/"):
            return streams(environ, start_response)
        return pages(environ, start_response)

    return app


def serve(port: int = 8000) -> None:
    """Serve the app with gevent until interrupted; the lifespan then stops the flows."""
    from gevent.pywsgi import WSGIServer

    supervisor = coflow.Supervisor(backend="gevent")
    with supervisor.lifespan(grace=2.0):
        server = WSGIServer(("127.0.0.1", port), create_app(supervisor), log=None)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.stop(timeout=1)


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8000")))
