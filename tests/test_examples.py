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
from coflow import Failure, FlowDone, FlowError, FlowState
from coflow.__main__ import main as cli
from coflow._demo import run_demo

# The examples are part of the source tree, not of the installed package.  Under plain `pytest`
# (tox, testing an installed wheel) the repository root is not on sys.path: append it, so that
# the installed coflow still comes first.
if importlib.util.find_spec("examples") is None:
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from examples import import_books, order_saga, sync_book

Record = tuple[float, str, Any]


def states_of(records: list[Record], flow_name: str) -> list[tuple[float, Any]]:
    return [(t, e.state) for t, name, e in records if name == flow_name and type(e) is FlowState]


def final_events(records: list[Record], flow_name: str) -> list[Any]:
    ends = (FlowDone, FlowError)
    return [e for _, name, e in records if name == flow_name and isinstance(e, ends)]


# sync_book ---------------------------------------------------------------------------------


def test_sync_book_collapses_a_burst_into_one_sync_after_two_retries(
    backend: Any, tolerance: float
) -> None:
    api = sync_book.FlakyBookAPI(failures=2)

    records = sync_book.main(backend, api=api)

    states = states_of(records, "sync_book")
    assert [(state["edits"], state["dirty"], state["synced"]) for _, state in states] == [
        (1, True, 0), (2, True, 0), (3, True, 0), (4, True, 0),   # the burst, one state per edit
        (4, "processing", 0),                                    # 0.5 s after the last edit
        (4, False, 1),                                           # pushed once, on the third attempt
    ]
    times = [t for t, _ in states]
    # debounce ends 0.5 s after the last edit (0.3 s); retries wait 0.2 s, then 0.4 s (exponential)
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.8, 1.4], abs=tolerance or 1e-9)
    assert api.calls == [("b-1", False), ("b-1", False), ("b-1", True)]
    # the flow runs until the driver stops it: no done or error event after the stop
    assert final_events(records, "sync_book") == []
    assert {name for _, name, _ in records} == {"sync_book"}


def test_sync_book_that_keeps_failing_ends_with_retries_exhausted(backend: Any) -> None:
    api = sync_book.FlakyBookAPI(failures=10)

    records = sync_book.main(backend, api=api)

    assert len(api.calls) == 4  # the first attempt and 3 retries
    [error] = final_events(records, "sync_book")
    assert isinstance(error, FlowError)
    assert isinstance(error.reason, coflow.RetriesExhausted)
    assert isinstance(error.reason.last_error, ConnectionError)


# import_books ------------------------------------------------------------------------------


def test_import_books_keeps_the_good_books_in_order_and_skips_the_bad(backend: Any) -> None:
    api = import_books.FakeLibraryAPI()

    records = import_books.main(backend, api=api)

    assert sorted(api.fetched) == sorted(import_books.URLS)
    [done] = final_events(records, "import_books")
    assert isinstance(done, FlowDone)
    fetched = done.state["fetched"]
    assert len(fetched) == len(import_books.URLS)  # one result per URL, in URL order
    assert [book["url"] for book in fetched[:-1]] == import_books.URLS[:-1]
    assert isinstance(fetched[-1], Failure) and isinstance(fetched[-1].error, LookupError)
    # the book without an ISBN and the failed fetch are skipped
    assert done.state["results"] == ["Dune", "Solaris", "Neuromancer"]


def test_import_books_commits_each_good_book_as_it_goes(backend: Any) -> None:
    records = import_books.main(backend)

    results_seen = [state["results"] for _, state in states_of(records, "import_books")]
    # a skip leaves the state unchanged, so it is never seen as a new state
    assert [r for r in results_seen if r] == [
        ["Dune"], ["Dune", "Solaris"], ["Dune", "Solaris", "Neuromancer"]
    ]


# order_saga --------------------------------------------------------------------------------


def test_order_saga_ships_a_good_order_and_compensates_a_failed_one_in_reverse(
    backend: Any, tolerance: float
) -> None:
    shop = order_saga.FakeShop()

    records = order_saga.main(backend, shop=shop)

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
        "reserved", "charged", "refunded", "released", "compensated"
    ]
    # linear backoff: retries after 0.1 s and 0.2 s, so compensation starts at 0.3 s
    times = [t for t, _ in statuses]
    assert times == pytest.approx([0.0, 0.0, 0.3, 0.3, 0.3], abs=tolerance or 1e-9)


def test_order_saga_failing_to_charge_releases_the_stock_only(backend: Any) -> None:
    class CardDeclined(Exception):
        pass

    class DecliningShop(order_saga.FakeShop):
        def charge(self, order_id: str, amount: float) -> str:
            self.journal.append((order_id, "charge"))
            raise CardDeclined("card declined")

    shop = DecliningShop()

    records = order_saga.main(backend, shop=shop, orders=order_saga.ORDERS[:1])

    assert shop.journal == [("order-1", "reserve"), ("order-1", "charge"), ("order-1", "release")]
    [done] = final_events(records, "order-1")
    assert isinstance(done, FlowDone)
    assert done.state["status"] == "compensated"
    assert done.state["reason"] == "card declined"


# python -m coflow demo ---------------------------------------------------------------------

EVENT_LINE = re.compile(r"^ *(\d+\.\d{3})  (\S+) +(state|done|error)\b *(.*)$")


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
    events = demo_events(output)
    assert (1.4, "sync_book", "state", "dirty=False synced=1") in events
    done = [(seconds, name) for seconds, name, kind, _ in events if kind == "done"]
    assert done == [(0.0, "import_books"), (0.0, "order-1"), (0.3, "order-2")]


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
        "status='reserved'", "status='charged'", "status='refunded'", "status='released'",
        "status='compensated'", "done",
    ]
    done = [(flow, seconds) for seconds, flow, kind, _ in events if kind == "done"]
    assert [flow for flow, _ in done] == ["import_books", "order-1", "order-2"]
    # order-2 is compensated after two linear retries of 0.1 s and 0.2 s
    tolerance = 1e-9 if name == "virtual" else 0.12
    assert [seconds for _, seconds in done] == pytest.approx([0.0, 0.0, 0.3], abs=tolerance)


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
