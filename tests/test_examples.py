"""The examples do what their docstrings say on every backend; so does ``python -m coflow demo``."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import backend_params

import coflow
from coflow import Failure, FlowDone, FlowError, FlowRestarted, FlowState
from coflow.__main__ import main as cli
from coflow._demo import run_demo

# The examples are part of the source tree, not of the installed package.  Under plain `pytest`
# (tox, testing an installed wheel) the repository root is not on sys.path: append it, so that
# the installed coflow still comes first.
if importlib.util.find_spec("examples") is None:
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from examples import flaky_supervised, import_books, order_pipeline, order_saga, sync_book

Record = tuple[float, str, Any]


def states_of(records: list[Record], flow_name: str) -> list[tuple[float, Any]]:
    return [(t, e.state) for t, name, e in records if name == flow_name and type(e) is FlowState]


def final_events(records: list[Record], flow_name: str) -> list[Any]:
    ends = (FlowDone, FlowError)
    return [e for _, name, e in records if name == flow_name and isinstance(e, ends)]


# sync_book ---------------------------------------------------------------------------------


def test_sync_book_collapses_a_burst_into_one_sync_after_two_retries(
    coflow_backend: Any, tolerance: float
) -> None:
    api = sync_book.FlakyBookAPI(failures=2)

    # the push succeeds at 1.4 s: stop the flow 0.15 s after it, a margin for the real backends
    records = sync_book.main(coflow_backend, api=api, stop_after=1.55)

    states = states_of(records, "sync_book")
    assert [(state["edits"], state["dirty"], state["synced"]) for _, state in states] == [
        # the burst, one state per edit
        (1, True, 0),
        (2, True, 0),
        (3, True, 0),
        (4, True, 0),
        (4, "processing", 0),  # 0.5 s after the last edit
        (4, False, 1),  # pushed once, on the third attempt
    ]
    times = [t for t, _ in states]
    # debounce ends 0.5 s after the last edit (0.3 s); retries wait 0.2 s, then 0.4 s (exponential)
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.8, 1.4], abs=tolerance or 1e-9)
    assert api.calls == [("b-1", False), ("b-1", False), ("b-1", True)]
    # the flow runs until the driver stops it: no done or error event after the stop
    assert final_events(records, "sync_book") == []
    assert {name for _, name, _ in records} == {"sync_book"}


def test_sync_book_that_keeps_failing_ends_with_retries_exhausted(coflow_backend: Any) -> None:
    api = sync_book.FlakyBookAPI(failures=10)

    # the last retry is at 2.2 s (0.8 + 0.2 + 0.4 + 0.8): stop the flow only after it
    records = sync_book.main(coflow_backend, api=api, stop_after=2.35)

    assert len(api.calls) == 4  # the first attempt and 3 retries
    [error] = final_events(records, "sync_book")
    assert isinstance(error, FlowError)
    assert isinstance(error.reason, coflow.RetriesExhausted)
    assert isinstance(error.reason.last_error, ConnectionError)


# import_books ------------------------------------------------------------------------------


def test_import_books_keeps_the_good_books_in_order_and_skips_the_bad(coflow_backend: Any) -> None:
    api = import_books.FakeLibraryAPI()

    records = import_books.main(coflow_backend, api=api)

    assert sorted(api.fetched) == sorted(import_books.URLS)
    [done] = final_events(records, "import_books")
    assert isinstance(done, FlowDone)
    fetched = done.state["fetched"]
    assert len(fetched) == len(import_books.URLS)  # one result per URL, in URL order
    assert [book["url"] for book in fetched[:-1]] == import_books.URLS[:-1]
    assert isinstance(fetched[-1], Failure) and isinstance(fetched[-1].error, LookupError)
    # the book without an ISBN and the failed fetch are skipped
    assert done.state["results"] == ["Dune", "Solaris", "Neuromancer"]


def test_import_books_commits_each_good_book_as_it_goes(coflow_backend: Any) -> None:
    records = import_books.main(coflow_backend)

    results_seen = [state["results"] for _, state in states_of(records, "import_books")]
    # a skip leaves the state unchanged, so it is never seen as a new state
    assert [r for r in results_seen if r] == [
        ["Dune"],
        ["Dune", "Solaris"],
        ["Dune", "Solaris", "Neuromancer"],
    ]


# order_saga --------------------------------------------------------------------------------


def test_order_saga_ships_a_good_order_and_compensates_a_failed_one_in_reverse(
    coflow_backend: Any, tolerance: float
) -> None:
    shop = order_saga.FakeShop()

    records = order_saga.main(coflow_backend, shop=shop)

    journal = {"order-1": [], "order-2": []}  # type: dict[str, list[str]]
    for order_id, action in shop.journal:
        journal[order_id].append(action)
    assert journal["order-1"] == ["reserve", "charge", "ship"]
    # shipping is tried 3 times; then the charge is refunded before the stock is released
    assert journal["order-2"] == ["reserve", "charge", "ship", "ship", "ship", "refund", "release"]

    [shipped] = final_events(records, "order-1")
    assert isinstance(shipped, FlowDone)
    assert shipped.state["status"] == "shipped"
    assert shipped.state["tracking"] == "trk-order-1"

    [compensated] = final_events(records, "order-2")
    assert isinstance(compensated, FlowDone)
    assert compensated.state["status"] == "compensated"
    assert "carrier rejected" in compensated.state["reason"]
    statuses = states_of(records, "order-2")
    assert [state["status"] for _, state in statuses] == [
        "reserved",
        "charged",
        "refunded",
        "released",
        "compensated",
    ]
    # linear backoff: retries after 0.1 s and 0.2 s, so compensation starts at 0.3 s
    times = [t for t, _ in statuses]
    assert times == pytest.approx([0.0, 0.0, 0.3, 0.3, 0.3], abs=tolerance or 1e-9)


def test_order_saga_failing_to_charge_releases_the_stock_only(coflow_backend: Any) -> None:
    class CardDeclined(Exception):
        pass

    class DecliningShop(order_saga.FakeShop):
        def charge(self, order_id: str, amount: float) -> str:
            self.journal.append((order_id, "charge"))
            raise CardDeclined("card declined")

    shop = DecliningShop()

    records = order_saga.main(coflow_backend, shop=shop, orders=order_saga.ORDERS[:1])

    assert shop.journal == [("order-1", "reserve"), ("order-1", "charge"), ("order-1", "release")]
    [done] = final_events(records, "order-1")
    assert isinstance(done, FlowDone)
    assert done.state["status"] == "compensated"
    assert done.state["reason"] == "card declined"


# order_pipeline ----------------------------------------------------------------------------


def runner_of(records: list[Record], flow_name: str, order_id: str | None = None) -> coflow.Runner:
    """The runner of the events named ``flow_name`` (a child: the one of that order)."""
    runners = {
        id(e.runner): e.runner
        for _, name, e in records
        if name == flow_name and (order_id is None or e.runner.get_state()["order_id"] == order_id)
    }
    [runner] = runners.values()
    return runner


def events_of(records: list[Record], runner: coflow.Runner) -> list[tuple[float, Any]]:
    return [(t, e) for t, _, e in records if e.runner is runner]


def actions(services: order_pipeline.FakeServices, order_id: str) -> list[str]:
    return [action for order, action in services.journal if order == order_id]


class TimedServices(order_pipeline.FakeServices):
    """Also notes when each authorization is voided and each order cancelled."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend
        self.origin = backend.now()
        self.times: dict[tuple[str, str], float] = {}

    def void(self, order_id: str, authorization: str) -> None:
        self.times[order_id, "void"] = self.backend.now() - self.origin
        super().void(order_id, authorization)

    def cancel(self, order_id: str) -> None:
        self.times[order_id, "cancel"] = self.backend.now() - self.origin
        super().cancel(order_id)


def test_order_pipeline_pays_through_a_called_child_and_mails_through_a_spawned_one(
    coflow_backend: Any, tolerance: float
) -> None:
    services = order_pipeline.FakeServices()

    records = order_pipeline.main(coflow_backend, services=services)

    order = runner_of(records, "order-1")
    payment = runner_of(records, "payment_flow", "order-1")
    email = runner_of(records, "email_flow", "order-1")
    # the order's children, oldest first: the called payment, then the spawned e-mail
    assert order.children() == [payment, email]
    assert order.children(status="done") == [payment, email]
    assert [order.status, payment.status, email.status] == ["done", "done", "done"]

    statuses = [(t, state["status"]) for t, state in states_of(records, "order-1")]
    assert [status for _, status in statuses] == ["validated", "paid", "completed"]
    assert [t for t, _ in statuses] == pytest.approx([0.0, 0.05, 0.05], abs=tolerance or 1e-9)
    [done] = final_events(records, "order-1")
    assert done.state == {
        **order_pipeline.ORDERS[0],
        "status": "completed",
        "payment_id": "pay-order-1",
    }

    # the payment child has its own state, from its initial_state, not the order's
    paid = [(t, type(e).__name__, e.state) for t, e in events_of(records, payment)]
    assert [(kind, state["status"]) for _, kind, state in paid] == [
        ("FlowState", "authorized"),
        ("FlowState", "captured"),
        ("FlowDone", "captured"),
    ]
    assert paid[-1][2] == {
        "order_id": "order-1",
        "amount": 99.99,
        "authorization": "auth-order-1",
        "status": "captured",
        "payment_id": "pay-order-1",
    }
    # it settles on its second poll, 0.05 s in
    assert [t for t, _, _ in paid] == pytest.approx([0.0, 0.05, 0.05], abs=tolerance or 1e-9)

    # the e-mail is retried once, and delivered after its parent has completed
    mailed = events_of(records, email)
    email_events = [e for _, e in mailed]
    assert [type(e) for e in email_events] == [FlowState, FlowDone]
    assert mailed[-1][0] == pytest.approx(0.1, abs=tolerance or 1e-9)
    order_done = next(i for i, (_, _, e) in enumerate(records) if e is done)
    email_done = next(i for i, (_, _, e) in enumerate(records) if e is email_events[-1])
    assert order_done < email_done
    assert email.result() == {
        "order_id": "order-1",
        "to": "ada@example.com",
        "template": "order_confirmed",
        "delivered": True,
    }
    assert actions(services, "order-1") == [
        "validate",
        "authorize",
        "capture",
        "capture",
        "deliver",
        "deliver",
    ]


def test_order_pipeline_turns_a_declined_card_into_payment_failed(coflow_backend: Any) -> None:
    services = order_pipeline.FakeServices()

    records = order_pipeline.main(coflow_backend, services=services)

    order = runner_of(records, "order-2")
    payment = runner_of(records, "payment_flow", "order-2")
    [failed] = [e for _, e in events_of(records, payment)]
    assert isinstance(failed, FlowError)
    assert isinstance(failed.reason, order_pipeline.CardDeclined)
    assert order.children(status="failed") == [payment]
    # the order caught ChildFailed at its call, and ended normally, with no e-mail
    [done] = final_events(records, "order-2")
    assert isinstance(done, FlowDone)
    assert done.state["status"] == "payment_failed"
    assert done.state["reason"] == "payment failed: card declined for order-2"
    assert actions(services, "order-2") == ["validate", "authorize"]


def test_order_pipeline_times_out_a_payment_that_never_settles_once_it_is_voided(
    coflow_backend: Any, tolerance: float
) -> None:
    services = order_pipeline.FakeServices()
    seen_at_timeout: list[list[str]] = []

    def watch(record: Record) -> None:
        _, name, event = record
        if name == "order-3" and type(event) is FlowState:
            if event.state["status"] == "payment_timed_out":
                seen_at_timeout.append(actions(services, "order-3"))

    records = order_pipeline.main(coflow_backend, watch, services=services)

    order = runner_of(records, "order-3")
    payment = runner_of(records, "payment_flow", "order-3")
    assert payment.status == "stopped"
    assert order.children(status="stopped") == [payment]
    # a stopped child sends no event after its stop: its "voided" state is never seen
    assert [type(e).__name__ for _, e in events_of(records, payment)] == ["FlowState"]
    [(timed_out_at, state)] = [
        (t, state) for t, state in states_of(records, "order-3") if state["status"] != "validated"
    ]
    assert state["status"] == "payment_timed_out"
    assert timed_out_at == pytest.approx(order_pipeline.PAYMENT_TIMEOUT, abs=tolerance or 1e-9)
    # the call gave FlowTimeout only once the child's cleanup had voided the authorization
    [journal] = seen_at_timeout
    assert journal[-1] == "void"
    assert journal[:2] == ["validate", "authorize"]
    assert set(journal[2:-1]) == {"capture"}  # polled until the timeout
    [done] = final_events(records, "order-3")
    assert isinstance(done, FlowDone)
    assert "deliver" not in actions(services, "order-3")


def test_order_pipeline_cancelling_an_order_stops_its_payment_child_first(
    coflow_backend: Any, tolerance: float
) -> None:
    services = TimedServices(coflow_backend)

    records = order_pipeline.main(coflow_backend, services=services)

    order = runner_of(records, "order-4")
    [payment] = order.children()
    assert (order.status, payment.status) == ("stopped", "stopped")
    with pytest.raises(coflow.FlowStopped):
        order.result()
    # the payment child's cleanup (void) ran before the order's own (cancel)
    assert actions(services, "order-4")[-2:] == ["void", "cancel"]
    assert actions(services, "order-4")[:2] == ["validate", "authorize"]
    # stopped flows send no event after their stop: no done, no error, no later state
    assert final_events(records, "order-4") == []
    assert [state["status"] for _, state in states_of(records, "order-4")] == ["validated"]
    assert [type(e).__name__ for _, e in events_of(records, payment)] == ["FlowState"]
    # the other orders are not affected
    assert [final_events(records, f"order-{n}")[0].state["status"] for n in (1, 2, 3)] == [
        "completed",
        "payment_failed",
        "payment_timed_out",
    ]
    # the customer cancels at 0.1 s; the call of order-3 times out at 0.2 s
    assert services.times == pytest.approx(
        {("order-4", "void"): 0.1, ("order-4", "cancel"): 0.1, ("order-3", "void"): 0.2},
        abs=tolerance or 1e-9,
    )


# flaky_supervised --------------------------------------------------------------------------


def kinds_and_times(records: list[Record], flow_name: str) -> list[tuple[float, str, Any]]:
    """``(seconds, event kind, state or reason)`` for each event of the flow."""
    return [
        (t, type(e).__name__, e.reason if isinstance(e, (FlowError, FlowRestarted)) else e.state)
        for t, name, e in records
        if name == flow_name
    ]


def test_flaky_supervised_restarts_a_flow_from_its_initial_state_until_it_works(
    coflow_backend: Any, tolerance: float
) -> None:
    storage = flaky_supervised.FlakyStorage()

    records = flaky_supervised.main(coflow_backend, storage=storage)

    initial = {"report": "ledger", "rows": 120, "status": "idle"}
    exporting = {**initial, "status": "exporting"}
    events = kinds_and_times(records, "ledger")
    assert [(kind, value) for _, kind, value in events if kind != "FlowRestarted"] == [
        ("FlowState", exporting),
        ("FlowState", initial),  # after restart 1: the initial state, then the flow again
        ("FlowState", exporting),
        ("FlowState", initial),  # after restart 2
        ("FlowState", exporting),
        ("FlowState", {**initial, "status": "exported"}),
        ("FlowDone", {**initial, "status": "exported"}),  # a normal end: not restarted
    ]
    restarts = [(t, value) for t, kind, value in events if kind == "FlowRestarted"]
    assert [str(reason) for _, reason in restarts] == [
        "storage refused upload 1 of 'ledger'",
        "storage refused upload 2 of 'ledger'",
    ]
    assert all(isinstance(reason, ConnectionError) for _, reason in restarts)
    # each restart comes just before the initial state it starts from
    kinds = [kind for _, kind, _ in events]
    assert kinds[1:3] == ["FlowRestarted", "FlowState"] == kinds[4:6]
    # each start reads for 0.05 s, then fails: restarts at 0.05 and 0.1, done at 0.15
    assert [t for t, _ in restarts] == pytest.approx([0.05, 0.1], abs=tolerance or 1e-9)
    assert events[-1][0] == pytest.approx(0.15, abs=tolerance or 1e-9)

    ledger = runner_of(records, "ledger")
    assert ledger.restarts == 2  # the same handle, all along
    assert ledger.result() == {**initial, "status": "exported"}
    assert [ok for report, ok in storage.uploads if report == "ledger"] == [False, False, True]


def test_flaky_supervised_gives_up_on_a_flow_that_fails_every_start(
    coflow_backend: Any, tolerance: float
) -> None:
    storage = flaky_supervised.FlakyStorage()
    supervisor = coflow.Supervisor(restart="transient", max_restarts=3, max_seconds=1.0)

    records = flaky_supervised.main(coflow_backend, storage=storage, supervisor=supervisor)

    events = kinds_and_times(records, "audit")
    restarts = [t for t, kind, _ in events if kind == "FlowRestarted"]
    assert restarts == pytest.approx([0.05, 0.1, 0.15], abs=tolerance or 1e-9)
    # the only FlowError is the last event: the failures it recovered from sent none
    [(failed_at, kind, reason)] = [event for event in events if event[1] == "FlowError"]
    assert events[-1] == (failed_at, kind, reason)
    assert failed_at == pytest.approx(0.2, abs=tolerance or 1e-9)
    assert isinstance(reason, ConnectionError)
    assert str(reason) == "storage refused upload 4 of 'audit'"  # the last error
    assert any("the supervisor gave up on flow 'audit'" in note for note in reason.__notes__)

    audit = runner_of(records, "audit")
    assert (audit.status, audit.restarts) == ("failed", 3)
    with pytest.raises(coflow.FlowFailed) as failed:
        audit.result()
    assert failed.value.__cause__ is reason
    assert [ok for report, ok in storage.uploads if report == "audit"] == [False] * 4
    # both flows have ended for good: the supervisor watches none of them any more
    assert supervisor.children() == []


# python -m coflow demo ---------------------------------------------------------------------

EVENT_LINE = re.compile(r"^ *(\d+\.\d{3})  (\S+) +(state|done|error|restart)\b *(.*)$")


def demo_events(output: str) -> list[tuple[float, str, str, str]]:
    """``(seconds, flow, kind, text)`` for each event line the demo printed."""
    matches = [EVENT_LINE.match(line) for line in output.splitlines()]
    return [(float(m[1]), m[2], m[3], m[4]) for m in matches if m]


def test_demo_on_the_virtual_clock_prints_every_event_with_its_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(["demo", "--virtual"]) == 0

    output = capsys.readouterr().out
    lines = output.splitlines()
    assert lines[0] == "coflow demo on the virtual backend (virtual clock, no real time passes)"
    assert any(line.startswith("== sync_book") for line in lines)
    assert any(line.startswith("== import_books") for line in lines)
    assert any(line.startswith("== order_saga") for line in lines)
    assert any(line.startswith("== order_pipeline") for line in lines)
    assert any(line.startswith("== flaky_supervised") for line in lines)
    events = demo_events(output)
    assert (1.4, "sync_book", "state", "dirty=False synced=1") in events
    done = [(seconds, name) for seconds, name, kind, _ in events if kind == "done"]
    assert done == [
        (0.0, "import_books"),
        (0.0, "order-1"),  # order_saga
        (0.3, "order-2"),
        (0.0, "order-2"),  # order_pipeline: payment failed
        (0.05, "order-1>payment_flow"),
        (0.05, "order-1"),
        (0.1, "order-1>email_flow"),  # after its parent
        (0.2, "order-3"),  # payment timed out
        (0.15, "ledger"),  # flaky_supervised
    ]
    restarts = [
        (seconds, name, text[:2]) for seconds, name, kind, text in events if kind == "restart"
    ]
    assert restarts == [
        (0.05, "ledger", "#1"),
        (0.05, "audit", "#1"),
        (0.1, "ledger", "#2"),
        (0.1, "audit", "#2"),
        (0.15, "audit", "#3"),
    ]
    errors = [(seconds, name, text) for seconds, name, kind, text in events if kind == "error"]
    assert errors == [
        (0.0, "order-2>payment_flow", "CardDeclined('card declined for order-2')"),
        (
            0.2,
            "audit",
            """ConnectionError("storage refused upload 4 of 'audit'"); the supervisor gave up""",
        ),
    ]


def test_demo_runs_in_real_time_on_the_threads_backend_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(["demo"]) == 0

    output = capsys.readouterr().out
    assert output.splitlines()[0] == "coflow demo on the threads backend (real time)"
    events = demo_events(output)
    synced = ("sync_book", "state", "dirty=False synced=1")
    [(synced_at, *_)] = [event for event in events if event[1:] == synced]
    assert synced_at == pytest.approx(1.4, abs=0.12)
    # the driver stops sync_book, which sends no event after that: the demo says so
    assert re.search(r"^ +sync_book +stopped$", output, re.MULTILINE)


@pytest.mark.parametrize("name", backend_params())
def test_demo_prints_each_event_as_a_change_on_every_backend(name: str) -> None:
    out = io.StringIO()

    assert run_demo(backend_name=name, out=out, examples=[import_books, order_saga]) == 0

    output = out.getvalue()
    mode = "virtual clock, no real time passes" if name == "virtual" else "real time"
    assert output.splitlines()[0] == f"coflow demo on the {name} backend ({mode})"
    events = demo_events(output)
    texts: dict[str, list[str]] = {}
    for _, flow, kind, text in events:
        texts.setdefault(flow, []).append(text if kind == "state" else kind)
    # Each line shows what the event changed, the first one too: the printer had every
    # flow's initial state before any of them took a step.
    assert texts["import_books"][0].startswith("fetched=[")
    assert texts["import_books"][1:] == [
        "results=['Dune']",
        "results=['Dune', 'Solaris']",
        "results=['Dune', 'Solaris', 'Neuromancer']",
        "done",
    ]
    assert texts["order-1"][0] == "status='reserved' reservation='rsv-order-1'"
    assert [text.split()[0] for text in texts["order-2"]] == [
        "status='reserved'",
        "status='charged'",
        "status='refunded'",
        "status='released'",
        "status='compensated'",
        "done",
    ]
    done = [(flow, seconds) for seconds, flow, kind, _ in events if kind == "done"]
    assert [flow for flow, _ in done] == ["import_books", "order-1", "order-2"]
    # order-2 is compensated after two linear retries of 0.1 s and 0.2 s
    tolerance = 1e-9 if name == "virtual" else 0.12
    assert [seconds for _, seconds in done] == pytest.approx([0.0, 0.0, 0.3], abs=tolerance)


@pytest.mark.parametrize("name", backend_params())
def test_demo_prints_children_restarts_and_stops_on_every_backend(name: str) -> None:
    out = io.StringIO()

    assert run_demo(backend_name=name, out=out, examples=[order_pipeline, flaky_supervised]) == 0

    output = out.getvalue()
    texts: dict[str, list[str]] = {}
    for _, flow, kind, text in demo_events(output):
        texts.setdefault(flow, []).append(f"{kind} {text}".strip())
    # a child is named after its parent; its first state, which the demo never saw begin, whole
    assert texts["order-1>payment_flow"] == [
        "state {'order_id': 'order-1', 'amount': 99.99, 'authorization': 'auth-order-1', "
        "'status': 'authorized'}",
        "state status='captured' payment_id='pay-order-1'",
        "done",
    ]
    assert texts["order-1"] == [
        "state status='validated'",
        "state status='paid' payment_id='pay-order-1'",
        "state status='completed'",
        "done",
    ]
    assert texts["order-1>email_flow"][-1] == "done"
    assert texts["order-2>payment_flow"] == ["error CardDeclined('card declined for order-2')"]
    # the flows that ended stopped send no more events: the demo says they stopped
    for stopped in ("order-3>payment_flow", "order-4", "order-4>payment_flow"):
        assert re.search(rf"^ +{stopped} +stopped$", output, re.MULTILINE), stopped
    # a restart shows its count and reason, and the state it starts from as the initial one
    assert texts["ledger"] == [
        "state status='exporting'",
        """restart #1 after ConnectionError("storage refused upload 1 of 'ledger'")""",
        "state (initial) status='idle'",
        "state status='exporting'",
        """restart #2 after ConnectionError("storage refused upload 2 of 'ledger'")""",
        "state (initial) status='idle'",
        "state status='exporting'",
        "state status='exported'",
        "done",
    ]
    assert [text.split()[0] for text in texts["audit"]] == [
        "state",
        "restart",
        "state",
        "state",
        "restart",
        "state",
        "state",
        "restart",
        "state",
        "state",
        "error",
    ]
    assert texts["audit"][-1].endswith("; the supervisor gave up")


def test_demo_shows_coflow_log_records_on_one_line_each(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    # as in a program that has not set up logging (pytest has: it captures the records)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])

    assert run_demo(virtual=True, examples=[flaky_supervised]) == 0

    err = capsys.readouterr().err
    assert err.splitlines() == [
        "coflow: warning: flow 'ledger' failed; restarting it (restart 1)",
        "coflow: warning: flow 'audit' failed; restarting it (restart 1)",
        "coflow: warning: flow 'ledger' failed; restarting it (restart 2)",
        "coflow: warning: flow 'audit' failed; restarting it (restart 2)",
        "coflow: warning: flow 'audit' failed; restarting it (restart 3)",
        "coflow: error: supervisor gave up on flow 'audit' after 3 restarts within 1s",
    ]
    assert logging.getLogger("coflow").handlers == []  # removed after the demo


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([]) == 2
    assert "demo" in capsys.readouterr().err


def test_demo_rejects_an_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["demo", "--backend", "nonesuch"])
    assert exit_info.value.code == 2
    assert "nonesuch" in capsys.readouterr().err


def test_demo_on_gevent_without_gevent_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ["gevent", *(name for name in sys.modules if name.startswith("gevent."))]:
        monkeypatch.setitem(sys.modules, module, None)  # importing it now fails
    monkeypatch.delitem(sys.modules, "coflow.backends.gevent", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        cli(["demo", "--backend", "gevent"])

    assert exit_info.value.code == 2
    assert "pip install 'coflow[gevent]'" in capsys.readouterr().err
