"""A supervised flaky flow: restarted from its initial state until it works, or given up.

Two nightly exports run under one ``coflow.Supervisor(restart="transient",
max_restarts=3, max_seconds=1.0)``, entered with ``with supervisor:`` around
their ``coflow.start``.  Each start of an export marks it ``"exporting"``,
reads its rows for 0.05 s, then uploads them to a storage service that fails
some uploads.  A failure is not caught by the flow: the supervisor restarts
it, on the same ``Runner`` handle.  Notify then receives ``FlowRestarted``
(with the error) and a ``FlowState`` with the initial state, and
``runner.restarts`` counts the restarts:

==========  ==============================================================
flow        what happens
==========  ==============================================================
``ledger``  its first two uploads fail: restarted at 0.05 s and 0.1 s, its
            third start uploads and ends ``done`` at 0.15 s (a normal end
            is not restarted under ``"transient"``); ``restarts == 2``
``audit``   every upload fails: restarted at 0.05, 0.1 and 0.15 s; its
            fourth failure, at 0.2 s, is one more than ``max_restarts``
            allows within ``max_seconds``, so the supervisor gives up and
            the flow ends ``failed`` with a final ``FlowError`` (its reason
            is the last error, noted "the supervisor gave up");
            ``restarts == 3`` and ``result()`` raises ``FlowFailed``
==========  ==============================================================

A restart sends no ``FlowError`` for the failure it recovers from: the only
``FlowError`` is the final one.  Restarts are counted on the backend's clock,
so the same limit holds on the virtual clock, in no real time.

Run it with ``python -m examples.flaky_supervised`` or ``python -m coflow demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import coflow
from coflow import Ok, run, set_state, wait
from examples._recording import Notify, Record, print_records, record_events

ExportState = dict[str, Any]

#: How long an export reads its rows before uploading them.
READ_SECONDS = 0.05
#: The storage fails every upload of these reports.
ALWAYS_FAILING = 10**9


class FlakyStorage:
    """A fake storage service: the first ``failures[report]`` uploads of a report fail."""

    def __init__(self, failures: dict[str, int] | None = None) -> None:
        self.failures = {"ledger": 2, "audit": ALWAYS_FAILING} if failures is None else failures
        self.uploads: list[tuple[str, bool]] = []  # (report, succeeded), one per upload

    def upload(self, report: str, rows: int) -> None:
        attempt = 1 + sum(1 for name, _ in self.uploads if name == report)
        succeeded = attempt > self.failures.get(report, 0)
        self.uploads.append((report, succeeded))
        if not succeeded:
            raise ConnectionError(f"storage refused upload {attempt} of {report!r}")


def upload(storage: FlakyStorage, state: ExportState) -> Ok[ExportState]:
    storage.upload(state["report"], state["rows"])
    return Ok({**state, "status": "exported"})


def export_flow(storage: FlakyStorage) -> Callable[[], Iterator[Any]]:
    """The export, as a generator function: a supervisor restarts it by calling it again."""

    def export() -> Iterator[Any]:
        yield set_state(lambda s: {**s, "status": "exporting"})
        yield wait(READ_SECONDS)  # reading the rows
        yield run(partial(upload, storage))  # an error fails the flow: the supervisor restarts it

    return export


def start(
    backend: Any,
    notify: Notify,
    storage: FlakyStorage | None = None,
    supervisor: coflow.Supervisor | None = None,
) -> list[coflow.Runner]:
    """Start both exports under the supervisor, on ``backend``; return the runners."""
    storage = FlakyStorage() if storage is None else storage
    if supervisor is None:
        supervisor = coflow.Supervisor(restart="transient", max_restarts=3, max_seconds=1.0)
    with supervisor:  # every coflow.start in this block is supervised by it
        return [
            coflow.start(
                export_flow(storage),
                initial_state={"report": report, "rows": rows, "status": "idle"},
                notify=notify,
                backend=backend,
                name=report,
            )
            for report, rows in [("ledger", 120), ("audit", 45)]
        ]


def main(
    backend: Any = None,
    notify: Callable[[Record], None] | None = None,
    storage: FlakyStorage | None = None,
    supervisor: coflow.Supervisor | None = None,
) -> list[Record]:
    """Run the example to its end; return the notify events as ``(seconds, flow name, event)``."""
    return record_events(partial(start, storage=storage, supervisor=supervisor), backend, notify)


if __name__ == "__main__":
    print_records(main())
