"""Debounced sync with retries.

A book is edited in a burst: four edits, 0.1 s apart.  The flow waits until
the book is dirty, waits for 0.5 s of quiet (each edit restarts the wait),
then pushes the book to an API that fails its first two calls.  ``run``
retries with exponential backoff (0.2 s, then 0.4 s), so the burst becomes
exactly one sync:

====  =====================================================
time  what happens
====  =====================================================
0.0   edit 1 (``dirty`` becomes true, the debounce starts)
0.3   edit 4, the last one
0.8   quiet for 0.5 s: ``dirty`` becomes ``"processing"``,
      attempt 1 fails
1.0   attempt 2 fails (after 0.2 s)
1.4   attempt 3 succeeds (after 0.4 s): ``dirty`` is false
1.6   the driver stops the flow
====  =====================================================

The push ends with ``Update``, applied to the state as it is when the push
returns: an edit made while the push ran has set ``dirty`` back to true, and
is kept, so the loop pushes the book again (``Ok`` would overwrite it).

Run it with ``python -m examples.sync_book`` or ``python -m coflow demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import coflow
from coflow import Update, debounce, run, set_state, wait, wait_until
from examples._recording import Notify, Record, print_records, record_events

BookState = dict[str, Any]


class FlakyBookAPI:
    """A fake remote API whose first ``failures`` calls raise ``ConnectionError``."""

    def __init__(self, failures: int = 2) -> None:
        self.failures = failures
        self.calls: list[tuple[str, bool]] = []  # (book_id, succeeded), one per attempt

    def sync_book(self, book_id: str) -> None:
        succeeded = len(self.calls) >= self.failures
        self.calls.append((book_id, succeeded))
        if not succeeded:
            raise ConnectionError(f"sync of {book_id!r} failed (attempt {len(self.calls)})")


def push_book(api: FlakyBookAPI, state: BookState) -> Update[BookState]:
    api.sync_book(state["book_id"])  # raising is an error: `run` retries it
    return Update(mark_synced)


def mark_synced(state: BookState) -> BookState:
    """Count the push; the book is clean unless an edit came in while it ran."""
    dirty = False if state["dirty"] == "processing" else state["dirty"]
    return {**state, "dirty": dirty, "synced": state["synced"] + 1}


def sync_book(api: FlakyBookAPI) -> Iterator[Any]:
    """Keep one book in sync: one push per burst of edits, retried on errors."""
    while True:
        yield wait_until(lambda state: state["dirty"] is True)
        yield debounce(0.5)
        yield set_state(lambda state: {**state, "dirty": "processing"})
        yield run(partial(push_book, api), retries=3, backoff="exponential", base_delay=0.2)


def mark_dirty(state: BookState) -> BookState:
    return {**state, "dirty": True, "edits": state["edits"] + 1}


def editor(
    book: coflow.Runner, edits: int = 4, every: float = 0.1, stop_after: float = 1.6
) -> Iterator[Any]:
    """Drive the example: a burst of edits, then stop the sync flow."""
    for _ in range(edits):
        book.signal(mark_dirty)
        yield wait(every)
    yield wait(stop_after - edits * every)
    book.stop()


def start(
    backend: Any, notify: Notify, api: FlakyBookAPI | None = None, stop_after: float = 1.6
) -> list[coflow.Runner]:
    """Start the sync flow and its driver on ``backend``; return the runners to wait for."""
    api = FlakyBookAPI() if api is None else api
    book = coflow.start(
        sync_book(api),
        initial_state={"book_id": "b-1", "dirty": False, "edits": 0, "synced": 0},
        notify=notify,
        backend=backend,
        name="sync_book",
    )
    driver = coflow.start(editor(book, stop_after=stop_after), backend=backend, name="editor")
    return [book, driver]


def main(
    backend: Any = None,
    notify: Callable[[Record], None] | None = None,
    api: FlakyBookAPI | None = None,
    stop_after: float = 1.6,
) -> list[Record]:
    """Run the example to its end; return the notify events as ``(seconds, flow name, event)``."""
    return record_events(partial(start, api=api, stop_after=stop_after), backend, notify)


if __name__ == "__main__":
    print_records(main())
