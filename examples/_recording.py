"""What every example's ``main`` does: run its flows to their end and record their events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import coflow

Notify = Callable[[Any], None]
#: ``(seconds since the example started, flow name, notify event)``
Record = tuple[float, str, Any]
Starter = Callable[[Any, Notify], list[coflow.Runner]]


def record_events(
    start: Starter, backend: Any = None, notify: Callable[[Record], None] | None = None
) -> list[Record]:
    """Start an example with ``start(backend, notify)``, wait for its runners, return its events.

    Each runner is waited for, and then its children (``call`` and ``spawn``).

    ``backend`` defaults to a fresh virtual clock.  A runner that ends failed or
    stopped is part of the story: its end is in the events, so it is not raised.
    """
    if backend is None:
        from coflow.backends.virtual import VirtualBackend

        backend = VirtualBackend()
    origin = backend.now()
    records: list[Record] = []

    def record(event: Any) -> None:
        entry = (backend.now() - origin, event.runner.name, event)
        records.append(entry)
        if notify is not None:
            notify(entry)

    for runner in start(backend, record):
        wait_for(runner)
    return records


def wait_for(runner: coflow.Runner) -> None:
    """Wait for ``runner``, then for the children it started (a spawned one may outlive it)."""
    try:
        runner.result(timeout=10)
    except (coflow.FlowFailed, coflow.FlowStopped):
        pass  # told by the events: FlowError, or no more events after a stop
    for child in runner.children():
        wait_for(child)


def print_records(records: list[Record]) -> None:
    for seconds, name, event in records:
        print(f"{seconds:7.3f}  {name:<12}  {event}")
