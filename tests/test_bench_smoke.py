"""The benchmarks run: every line of ``python -m bench``, with tiny sizes, gives positive figures.

Speed is not asserted here (that is what ``python -m bench`` reports); this
only keeps the bench working as the core changes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# bench/ is not installed with the package; it lives at the repository root.  Appended,
# not prepended, so an installed coflow keeps winning over the source tree.
REPOSITORY = Path(__file__).resolve().parents[1]
if not (REPOSITORY / "bench" / "__init__.py").exists():
    pytest.skip("bench/ is not next to the tests (not a source checkout)", allow_module_level=True)
if str(REPOSITORY) not in sys.path:
    sys.path.append(str(REPOSITORY))

from bench import (  # noqa: E402
    Row,
    backend_overhead,
    children,
    format_table,
    instrument,
    memory,
    retry,
    signals,
    sync_steps,
    virtual_async,
    virtual_time,
    web,
)


def assert_rows(rows: list[Row], count: int) -> None:
    assert len(rows) == count
    for row in rows:
        assert row.coflow is not None and row.coflow > 0, row
        if row.peer_value is not None:
            assert row.peer_value > 0, row
            assert row.ratio is not None and row.ratio > 0, row
        assert row.verdict() in ("yes", "n/a") or row.verdict().startswith("NO (")
    table = format_table(rows)
    assert rows[0].line in table


def test_sync_steps_each_side_returns_a_positive_time() -> None:
    assert sync_steps.run_coflow(50) > 0
    assert sync_steps.run_hand_loop(50) > 0
    assert sync_steps.run_asyncio(50) > 0


def test_sync_steps_line() -> None:
    rows = sync_steps.measure(steps=50, repeats=1)
    assert_rows(rows, 2)
    assert [row.peer for row in rows] == ["hand-written send loop", "asyncio.sleep(0) loop"]


def test_virtual_time_line_against_simpy() -> None:
    pytest.importorskip("simpy")
    rows = virtual_time.measure(flows=5, waits=4, repeats=1, scaled_from="10,000 x 100")
    assert_rows(rows, 1)
    assert rows[0].peer == "simpy"
    assert "scaled down from 10,000 x 100" in rows[0].line


def test_virtual_time_both_models_end_at_the_same_instant() -> None:
    pytest.importorskip("simpy")
    delays = virtual_time.make_delays(flows=3, waits=5)
    assert delays == virtual_time.make_delays(flows=3, waits=5)  # seeded: same delays every time
    _, coflow_end = virtual_time.run_coflow(delays)
    _, simpy_end = virtual_time.run_simpy(delays)
    assert coflow_end == pytest.approx(max(sum(flow) for flow in delays))
    assert coflow_end == pytest.approx(simpy_end)


def test_memory_lines() -> None:
    rows = memory.measure(count=50, rss_count=2_000)
    assert [row.peer for row in rows] == [
        "bare suspended generator",
        "asyncio task on an Event",
        "bare suspended generator",
    ]
    if Path("/proc/self/statm").exists():  # resident memory is read from /proc (Linux)
        assert_rows(rows, 3)
        assert "resident" in rows[2].line
    else:
        assert_rows(rows[:2], 2)
        assert rows[2].coflow is None and rows[2].verdict() == "n/a"


def test_virtual_time_scaling_and_long_flow_lines() -> None:
    pytest.importorskip("simpy")
    rows = virtual_time.measure_all(((5, 4), (10, 4)), (3, 6), repeats=1, max_events=1_000)
    assert_rows(rows, 3)
    assert [row.target.bound for row in rows] == [1.5, 1.5, 2.0]
    assert "scaled down from 1,000 x 100" in rows[0].line
    assert "scaled down from 1,000 x 1,000" in rows[2].line


def test_signals_line() -> None:
    rows = signals.measure(signals=50, repeats=1)
    assert_rows(rows, 1)
    assert rows[0].peer_value is None


def test_retry_line() -> None:
    rows = retry.measure(runs=5, attempts=3, repeats=1)
    assert_rows(rows, 1)
    if retry.tenacity_available():
        assert rows[0].peer_value is not None
    else:
        assert rows[0].peer_value is None and rows[0].verdict() != "n/a"


def test_flaky_fails_all_attempts_but_the_last() -> None:
    flaky = retry.Flaky(3)
    outcomes = []
    for _ in range(6):
        try:
            flaky()
            outcomes.append("ok")
        except retry.TransientError:
            outcomes.append("error")
    assert outcomes == ["error", "error", "ok", "error", "error", "ok"]
    assert flaky.calls == 6


def test_retry_flow_makes_every_attempt_on_the_virtual_backend() -> None:
    # run_coflow checks the attempt count itself and raises if it is off.
    assert retry.run_coflow(runs=4, attempts=3) > 0


@pytest.mark.parametrize(
    "harness",
    [
        pytest.param(backend_overhead.AsyncioHarness, id="asyncio"),
        pytest.param(lambda: backend_overhead.ThreadsHarness(workers=2), id="threads"),
    ],
)
def test_backend_overhead_rows(harness: Callable[[], backend_overhead.Harness]) -> None:
    rows = backend_overhead.measure_backend(harness(), steps=20, tasks=30, repeats=1)
    assert_rows(rows, 2)
    assert all(row.peer_value is not None for row in rows)


def test_backend_overhead_rows_on_gevent() -> None:
    pytest.importorskip("gevent")
    rows = backend_overhead.measure_backend(
        backend_overhead.GeventHarness(), steps=20, tasks=30, repeats=1
    )
    assert_rows(rows, 2)
    assert [row.peer for row in rows] == ["gevent.spawn(work).get()", "gevent.joinall(spawn(work))"]


def test_backend_overhead_line_without_gevent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_overhead, "gevent_available", lambda: False)
    rows = backend_overhead.measure(steps=10, tasks=10, repeats=1, workers=2)
    assert len(rows) == 6
    not_measured = [row for row in rows if "gevent" in row.line]
    assert len(not_measured) == 2
    for row in not_measured:
        assert row.coflow is None and row.peer_value is None
        assert row.peer == "gevent (not installed)" and row.verdict() == "n/a"
    assert_rows([row for row in rows if row not in not_measured], 4)
    assert "gevent (not installed)" in format_table(rows)


def test_children_each_side_runs_every_child() -> None:
    # Each side counts the children (or tasks) that ran and raises if the count is off.
    assert children.run_coflow_virtual(30) > 0
    assert children.run_coflow_asyncio(30) > 0
    assert children.run_asyncio_tasks(30) > 0


def test_children_line() -> None:
    rows = children.measure(calls=20, repeats=1)
    assert_rows(rows, 2)
    assert [row.line for row in rows] == [
        "child flows, virtual: call x 20",
        "child flows, asyncio: call x 20",
    ]
    assert all(row.peer == "await create_task(trivial())" for row in rows)
    assert all(row.target.on == "coflow" and row.target.bound == 5.0 for row in rows)


def test_virtual_async_line() -> None:
    rows = virtual_async.measure(tasks=20, sleeps=3, repeats=1)
    assert_rows(rows, len(rows))
    assert len(rows) >= 3


def test_web_lines() -> None:
    rows = web.measure(subscribers=5, events=3, repeats=1)
    assert len(rows) == 3
    assert all(row.coflow is None or row.coflow > 0 for row in rows)
    assert rows[0].coflow is not None and rows[1].coflow is not None


def test_instrument_lines() -> None:
    rows = instrument.measure(steps=50, runners=20, repeats=1)
    assert_rows(rows, 2)
    assert rows[0].peer == "no instrument"
    assert "20 waiting runners" in rows[1].line
