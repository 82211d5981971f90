"""Import books: fetch several URLs in parallel, then keep the good ones.

``parallel`` fetches every URL at once and stores the list of results in
the state under ``"fetched"``.  With ``on_error="complete_all"`` a fetch
that fails does not cancel the others: its place in the list holds a
``coflow.Failure``.  ``each`` then walks ``"fetched"`` and adds each good
book to ``"results"``; a failed fetch or a book without an ISBN is a
``Skip``, which leaves the state unchanged and goes on to the next book.

Run it with ``python -m examples.import_books`` or ``python -m coflow demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import coflow
from coflow import Failure, Ok, Skip, each, parallel
from examples._recording import Notify, Record, print_records, record_events

ImportState = dict[str, Any]

CATALOGUE: dict[str, dict[str, Any]] = {
    "https://books.example/dune": {"title": "Dune", "isbn": "978-0441013593"},
    "https://books.example/untitled": {"title": "Untitled draft", "isbn": None},
    "https://books.example/solaris": {"title": "Solaris", "isbn": "978-0156027601"},
    "https://books.example/neuromancer": {"title": "Neuromancer", "isbn": "978-0441569595"},
}
URLS = [*CATALOGUE, "https://books.example/missing"]


class FakeLibraryAPI:
    """A fake remote catalogue: unknown URLs raise ``LookupError``."""

    def __init__(self, catalogue: dict[str, dict[str, Any]] | None = None) -> None:
        self.catalogue = CATALOGUE if catalogue is None else catalogue
        self.fetched: list[str] = []

    def fetch_book(self, url: str) -> dict[str, Any]:
        self.fetched.append(url)
        if url not in self.catalogue:
            raise LookupError(f"404 Not Found: {url}")
        return {"url": url, **self.catalogue[url]}


def add_book(book: dict[str, Any] | Failure, state: ImportState) -> Ok[ImportState] | Skip:
    if isinstance(book, Failure):
        return Skip(f"fetch failed: {book.error}")
    if not book["isbn"]:
        return Skip(f"{book['title']!r} has no ISBN")
    return Ok({**state, "results": [*state["results"], book["title"]]})


def import_books(api: FakeLibraryAPI) -> Iterator[Any]:
    """Fetch every URL of the state at once, then import the good books in order."""
    yield parallel(
        lambda state: [partial(api.fetch_book, url) for url in state["urls"]],
        collect_as="fetched",
        on_error="complete_all",
    )
    yield each("fetched", add_book)


def start(
    backend: Any, notify: Notify, api: FakeLibraryAPI | None = None, urls: list[str] | None = None
) -> list[coflow.Runner]:
    """Start the import on ``backend``; return the runners to wait for."""
    api = FakeLibraryAPI() if api is None else api
    runner = coflow.start(
        import_books(api),
        initial_state={"urls": URLS if urls is None else urls, "results": []},
        notify=notify,
        backend=backend,
        name="import_books",
    )
    return [runner]


def main(
    backend: Any = None,
    notify: Callable[[Record], None] | None = None,
    api: FakeLibraryAPI | None = None,
    urls: list[str] | None = None,
) -> list[Record]:
    """Run the example to its end; return the notify events as ``(seconds, flow name, event)``."""
    return record_events(partial(start, api=api, urls=urls), backend, notify)


if __name__ == "__main__":
    print_records(main())
