"""coflow's pytest plugin, as a user meets it: their own test modules, no conftest, run by pytester.

Installing coflow is enough for pytest to load the plugin (a ``pytest11``
entry point).  ``coflow_backend`` runs a test once per backend, chosen by
``--coflow-backends`` and the ``coflow_backends`` marker; ``virtual_backend``
fails a test that leaves runners running, unless it opts out; ``timeline``
and ``after`` work on the test's backend.  Each user's session runs in this
process (``runpytest_inprocess``), so it takes milliseconds.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

import pytest
from conftest import INNER_RUN_OPTIONS

import coflow
from coflow import wait
from coflow.backends.virtual import VirtualBackend
from coflow.testing import After, Timeline

pytest_plugins = ["pytester"]

#: Plugins installed here that a user of coflow need not have: left out of their sessions.
UNRELATED = [
    "-p",
    "no:anyio",
    "-p",
    "no:asyncio",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
]
HAS_GEVENT = importlib.util.find_spec("gevent") is not None


def run_users_tests(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*INNER_RUN_OPTIONS, *UNRELATED, "-v", *args)


ON_EVERY_BACKEND = """
import coflow


def test_a_flow_waits_and_the_timeline_says_when(coflow_backend, timeline, after, tolerance):
    assert tolerance == (0.0 if coflow_backend.name == "virtual" else 0.12)
    flow = coflow.wait_until(lambda s: s)
    runner = coflow.start(flow, initial_state=False, backend=coflow_backend)
    after(0.05, lambda: timeline.log("signal"))
    after(0.05, lambda: runner.signal(lambda s: True))
    assert runner.result(timeout=5) is True
    timeline.log("done")
    timeline.assert_matches([(0.05, "signal"), (0.05, "done")])
"""


def test_a_users_module_with_no_conftest_runs_once_on_each_backend(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_users_flows=ON_EVERY_BACKEND)

    result = run_users_tests(pytester)

    result.assert_outcomes(passed=4 if HAS_GEVENT else 3, skipped=0 if HAS_GEVENT else 1)
    test = "test_users_flows.py::test_a_flow_waits_and_the_timeline_says_when"
    outcome = {"gevent": "PASSED" if HAS_GEVENT else "SKIPPED"}
    result.stdout.fnmatch_lines(
        [
            f"{test}[[]{name}[]] {outcome.get(name, 'PASSED')}*"
            for name in ("virtual", "asyncio", "gevent", "threads")
        ]
    )


def test_gevent_is_skipped_saying_so_where_it_is_not_installed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "gevent" else find_spec(name, *rest),
    )
    pytester.makepyfile(test_users_flows=ON_EVERY_BACKEND)

    result = run_users_tests(pytester, "-rs")

    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*[[]gevent[]] SKIPPED*",
            "SKIPPED [[]1[]] test_users_flows.py: gevent is not installed: "
            "pip install 'coflow[[]gevent[]]'",
        ]
    )


def test_the_option_chooses_the_backends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users_flows=ON_EVERY_BACKEND)

    result = run_users_tests(pytester, "--coflow-backends=threads,virtual")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*[[]threads[]] PASSED*", "*[[]virtual[]] PASSED*"])


def test_the_marker_chooses_the_backends_and_the_option_narrows_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_users_flows="""
        import pytest

        @pytest.mark.coflow_backends("virtual", "asyncio")
        def test_on_two(coflow_backend):
            assert coflow_backend.name in ("virtual", "asyncio")

        pytestmark = pytest.mark.coflow_backends("threads")

        def test_on_the_modules_one(coflow_backend):
            assert coflow_backend.name == "threads"
        """
    )

    result = run_users_tests(pytester)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_on_two[[]virtual[]] PASSED*",
            "*test_on_two[[]asyncio[]] PASSED*",
            "*test_on_the_modules_one[[]threads[]] PASSED*",
        ]
    )

    narrowed = run_users_tests(pytester, "--coflow-backends=asyncio", "-rs")
    narrowed.assert_outcomes(passed=1, skipped=1)
    narrowed.stdout.fnmatch_lines(
        [
            "*test_on_two[[]asyncio[]] PASSED*",
            "*--coflow-backends=asyncio names none of coflow_backends('threads',)*",
        ]
    )


def test_an_unknown_backend_name_is_an_error_listing_the_names(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_users_flows="""
        import pytest

        @pytest.mark.coflow_backends("virtual", "trio")
        def test_it(coflow_backend):
            pass
        """
    )

    collected = run_users_tests(pytester)
    assert collected.ret == pytest.ExitCode.INTERRUPTED
    collected.stdout.fnmatch_lines(
        ["*coflow_backends: no backend called trio; valid: virtual, asyncio, gevent, threads*"]
    )

    asked = run_users_tests(pytester, "--coflow-backends=virtual,mine")
    assert asked.ret == pytest.ExitCode.USAGE_ERROR
    asked.stderr.fnmatch_lines(
        ["*--coflow-backends=virtual,mine: no backend called mine; valid: *"]
    )


def test_each_backend_is_ready_and_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_users_flows="""
        import threading

        import coflow

        def test_work_runs_and_the_test_may_block_on_it(coflow_backend):
            work = coflow.run(lambda s: coflow.Ok(s + 1))
            runner = coflow.start(work, initial_state=1, backend=coflow_backend)
            assert runner.result(timeout=5) == 2

        def test_the_asyncio_loop_runs_in_a_thread_of_its_own(coflow_backend):
            if coflow_backend.name == "asyncio":
                assert coflow_backend.loop.is_running()
                assert threading.current_thread() is threading.main_thread()
        """
    )

    result = run_users_tests(pytester, "--coflow-backends=virtual,asyncio,threads")

    result.assert_outcomes(passed=6)


# --- virtual_backend: runners left running ------------------------------------------------------

LEFT_RUNNING = """
import pytest

import coflow


def waits_forever():
    yield coflow.wait_until(lambda s: s == "never")


def test_leaves_a_flow_and_its_child_running(virtual_backend):
    def parent():
        yield coflow.spawn(waits_forever)
        yield coflow.wait(3600)

    coflow.start(parent, initial_state=None, backend=virtual_backend, name="order-1")
    virtual_backend.advance(1)


@pytest.mark.coflow_leave_running
def test_means_to_leave_it_running(virtual_backend):
    coflow.start(waits_forever, initial_state=None, backend=virtual_backend)
    virtual_backend.advance(1)


def test_stops_it_at_its_end(virtual_backend):
    runner = coflow.start(waits_forever, initial_state=None, backend=virtual_backend)
    virtual_backend.advance(1)
    runner.stop()  # takes effect at teardown, which runs what is ready


def test_lets_it_finish(virtual_backend, after, timeline):
    after(2.5, lambda: timeline.log("late"))
    virtual_backend.run()
    timeline.assert_matches([(2.5, "late")])


def test_fails_and_leaves_it_running(virtual_backend):
    coflow.start(waits_forever, initial_state=None, backend=virtual_backend)
    assert False, "the test's own failure"
"""


def test_a_test_that_leaves_runners_running_fails_naming_them_and_the_way_out(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_users_flows=LEFT_RUNNING)

    result = run_users_tests(pytester)

    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_flow_and_its_child_running*",
            "*the test left 2 runners running on its virtual_backend:",
            "*<Runner * 'order-1' running>: flow parent",
            "*<Runner * 'waits_forever' running>: flow waits_forever, a child of order-1",
            "*Stop each one (runner.stop()*or let it finish (virtual_backend.run()); or,"
            " if the test means to leave them running, mark it @pytest.mark.coflow_leave_running.",
        ]
    )
    # The test's own failure is what it reports, not the runners it left.
    result.stdout.fnmatch_lines(["*test_fails_and_leaves_it_running FAILED*"])
    assert "ERROR at teardown of test_fails_and_leaves_it_running" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*test_means_to_leave_it_running PASSED*"])


def test_the_seed_of_the_virtual_clock_comes_from_the_marker_or_the_option(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_users_flows="""
        import random

        import pytest

        def draws(rng):
            return [rng.random() for _ in range(3)]

        def test_by_default(virtual_backend, request):
            seed = request.config.getoption("coflow_seed") or 0
            assert draws(virtual_backend.random) == draws(random.Random(seed))

        @pytest.mark.coflow_seed(7)
        def test_marked(virtual_backend):
            assert draws(virtual_backend.random) == draws(random.Random(7))

        @pytest.mark.coflow_seed(7)
        @pytest.mark.coflow_backends("virtual")
        def test_the_parametrized_one_too(coflow_backend):
            assert draws(coflow_backend.random) == draws(random.Random(7))
        """
    )

    run_users_tests(pytester).assert_outcomes(passed=3)
    run_users_tests(pytester, "--coflow-seed=3").assert_outcomes(passed=3)


# --- the fixtures that read as a timeline --------------------------------------------------------


def test_timeline_and_after_are_exact_on_the_virtual_clock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_users_flows="""
        import coflow

        def test_exact(virtual_backend, timeline, after):
            after(0.2, lambda: timeline.log("a"))
            after(0.6, lambda: timeline.log("b"))
            virtual_backend.run()
            timeline.assert_matches([(0.2, "a"), (0.6, "b")])

        def test_off_by_a_millisecond(virtual_backend, timeline, after):
            after(0.201, lambda: timeline.log("a"))
            virtual_backend.run()
            timeline.assert_matches([(0.2, "a")])
        """
    )

    result = run_users_tests(pytester)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: the timeline differs (times within 1e-09 s match):",
            "*expected: [[](0.2, 'a')[]]",
            "*recorded: [[](0.201, 'a')[]]",
        ]
    )


def test_coflow_backend_cannot_be_got_by_getfixturevalue(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_users_flows="""
        def test_it(request):
            request.getfixturevalue("coflow_backend")
        """
    )

    result = run_users_tests(pytester)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*coflow_backend must be an argument of the test*"])


def test_installing_coflow_registers_the_plugin_and_its_fixtures(pytester: pytest.Pytester) -> None:
    [entry] = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "coflow"
    ]
    assert entry.value == "coflow.pytest_plugin"

    result = run_users_tests(pytester, "--fixtures")

    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from coflow.pytest_plugin*",
            *(
                f"{name} -- *coflow/pytest_plugin.py:*"
                for name in ("coflow_backend", "virtual_backend", "tolerance", "timeline", "after")
            ),
        ]
    )


# --- the classes behind the fixtures, on their own ----------------------------------------------


def test_timeline_within_its_tolerance_matches_and_otherwise_shows_both() -> None:
    backend = VirtualBackend(start=10.0)
    timeline = Timeline(backend, tolerance=0.1)
    backend.advance(0.25)
    timeline.log("x")

    timeline.assert_matches([(0.3, "x")])
    assert timeline.labels() == ["x"]
    with pytest.raises(
        AssertionError, match=r"expected: \[\(0\.4, 'x'\)\]\n  recorded: \[\(0\.25, 'x'\)\]"
    ):
        timeline.assert_matches([(0.4, "x")])
    with pytest.raises(AssertionError, match="expected: \\[\\(0\\.25, 'y'\\)\\]"):
        timeline.assert_matches([(0.25, "y")])


def test_after_is_a_flow_no_supervisor_restarts() -> None:
    backend = VirtualBackend()
    after = After(backend)
    called: list[float] = []
    with coflow.Supervisor(backend=backend, restart="permanent"):
        runner = after(1.5, lambda: called.append(backend.now()))
    backend.run()

    assert called == [1.5]
    assert (runner.name, runner.status, runner.restarts) == ("after(1.5)", "done", 0)
    with pytest.raises(ValueError):
        after(-1, lambda: None)


def test_the_started_hook_sees_each_root_and_child_runner() -> None:
    from coflow._instrument import started_hooks

    seen: list[str] = []

    def parent() -> Any:
        yield coflow.call(wait(1))

    started_hooks.append(lambda runner: seen.append(runner.name))
    try:
        coflow.start(parent, initial_state=None, backend=VirtualBackend()).result()
    finally:
        started_hooks.pop()

    assert seen == ["parent", "wait(seconds=1.0)"]
