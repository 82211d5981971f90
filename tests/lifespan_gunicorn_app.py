"""A WSGI app served by gunicorn ``-k gevent`` in tests/test_lifespan_web.py.

A request to ``/edit/<book>`` marks the book's sync dirty; its push waits for a
long quiet period (a debounce), so the worker is told to exit while the push is
pending.  The flow's cancellation cleanup does the pending push, which writes
the file ``COFLOW_LIFESPAN_MARKER`` names: the config file's ``worker_exit``
hook shuts the supervisor down with a grace, and that cleanup runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import coflow
from coflow import Update, debounce, get_state, run, wait_until

supervisor = coflow.Supervisor()


def push(state: dict[str, Any]) -> Update:
    """The book's push to the store: here, a line in the marker file."""
    with open(os.environ["COFLOW_LIFESPAN_MARKER"], "a", encoding="utf-8") as marker:
        marker.write(f"pushed {state['book']}\n")
    return Update(lambda s: {**s, "dirty": False})


@coflow.flow(initial_state={"book": None, "dirty": False})
def sync_book() -> coflow.FlowGenerator:
    try:
        while True:
            yield wait_until(lambda s: s["dirty"])
            yield debounce(60.0)  # edits come in bursts: push once they stop
            yield run(push)
    except coflow.Cancelled:
        state = yield get_state()
        if state["dirty"]:
            yield run(push)  # the pending push, before the worker goes
        raise


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    book = environ["PATH_INFO"].rpartition("/")[2]
    runner = supervisor.start(sync_book, key=book, initial_state={"book": book, "dirty": False})
    runner.signal(lambda s: {**s, "dirty": True}).result(timeout=5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{runner.id} {runner.backend.name}".encode()]
