"""The public surface: every SPEC name exported once, as ``coflow.X``; importing stays light."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing
from collections import Counter

import pytest

import coflow

PUBLIC_NAMES = [
    # Flows and runners
    "flow",
    "Flow",
    "start",
    "Runner",
    "EventStream",
    # Steps
    "Step",
    "sequence",
    "repeat",
    "wait",
    "wait_until",
    "debounce",
    "receive",
    "set_state",
    "get_state",
    "run",
    "parallel",
    "race",
    "each",
    "branch",
    "embed",
    "timeout",
    "call",
    "spawn",
    # Supervision
    "Supervisor",
    # Observing
    "Instrument",
    "add_instrument",
    "remove_instrument",
    "inspect",
    "stuck",
    "HistoryRecorder",
    # Results
    "Ok",
    "Update",
    "Retry",
    "Error",
    "Skip",
    "Failure",
    "RetryPolicy",
    # Notify events
    "FlowState",
    "FlowDone",
    "FlowError",
    "FlowRestarted",
    # Errors
    "FlowException",
    "FlowFailed",
    "FlowStopped",
    "FlowTimeout",
    "RetriesExhausted",
    "StepFailed",
    "ChildFailed",
    "FlowNotRunning",
    "Deadlock",
    "InvalidStep",
    "Cancelled",
]
#: Exported beyond SPEC: the type of a flow function's generator, and what a backend written
#: outside coflow builds on.
KIT_NAMES = ["FlowGenerator", "Backend"]


def test_all_is_exactly_the_public_names() -> None:
    assert sorted(coflow.__all__) == sorted(PUBLIC_NAMES + KIT_NAMES)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_exists(name: str) -> None:
    assert hasattr(coflow, name), f"coflow.{name} is missing"


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_is_in_all(name: str) -> None:
    assert name in coflow.__all__


def test_all_lists_each_name_exactly_once() -> None:
    duplicates = [name for name, count in Counter(coflow.__all__).items() if count > 1]
    assert duplicates == []


def test_every_name_in_all_exists() -> None:
    missing = [name for name in coflow.__all__ if not hasattr(coflow, name)]
    assert missing == []


def test_all_holds_no_private_names() -> None:
    assert [name for name in coflow.__all__ if name.startswith("_")] == []


def test_classes_and_functions_claim_the_public_module() -> None:
    wrong = {}
    for name in coflow.__all__:
        obj = getattr(coflow, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (FlowGenerator), which Python 3.10 calls a class
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ != "coflow":
            wrong[name] = obj.__module__
    assert wrong == {}


def test_error_classes_print_with_the_public_module() -> None:
    assert f"{coflow.FlowFailed.__module__}.{coflow.FlowFailed.__qualname__}" == "coflow.FlowFailed"
    assert f"{coflow.Cancelled.__module__}.{coflow.Cancelled.__qualname__}" == "coflow.Cancelled"


def modules_imported_by(module: str, wanted: str) -> str:
    """What ``import module`` imports, in a fresh interpreter, of the modules ``m`` that
    the expression ``wanted`` picks."""
    probe = f"import {module}, sys; print(sorted(m for m in sys.modules if {wanted}))"
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(coflow.__file__))),
    )
    return completed.stdout.strip()


BACKEND_LIBRARIES = "m.split('.')[0] in {'asyncio', 'gevent', 'greenlet'}"


def test_importing_coflow_imports_no_backend_library() -> None:
    assert modules_imported_by("coflow", BACKEND_LIBRARIES) == "[]"


def test_importing_coflow_or_its_testing_tools_imports_no_pytest() -> None:
    # Only coflow.pytest_plugin imports pytest; pytest loads it, nothing of coflow does.
    pytest_modules = "m.split('.')[0] in {'pytest', '_pytest'} or m == 'coflow.pytest_plugin'"
    assert modules_imported_by("coflow, coflow.testing", pytest_modules) == "[]"


# coflow.backends: the kit a backend is written with, importable without any adapter

BACKEND_KIT_NAMES = [
    "Backend",
    "EventLoopBackend",
    "Handle",
    "Latch",
    "backend_names",
    "call_work",
    "register_backend",
    "wait_in_thread",
]


def test_the_backend_kit_is_exactly_its_names() -> None:
    import coflow.backends

    assert sorted(coflow.backends.__all__) == BACKEND_KIT_NAMES
    assert [name for name in BACKEND_KIT_NAMES if not hasattr(coflow.backends, name)] == []


def test_the_backend_kit_claims_its_public_module() -> None:
    import coflow.backends

    modules = {name: getattr(coflow.backends, name).__module__ for name in BACKEND_KIT_NAMES}
    assert modules == {
        name: "coflow" if name == "Backend" else "coflow.backends" for name in BACKEND_KIT_NAMES
    }
    assert coflow.backends.Backend is coflow.Backend


def test_importing_the_backend_kit_imports_no_adapter_and_no_backend_library() -> None:
    adapters_or_a_pool = "m.startswith('coflow.backends.') or m == 'concurrent.futures.thread'"
    wanted = f"{adapters_or_a_pool} or {BACKEND_LIBRARIES}"
    assert modules_imported_by("coflow.backends", wanted) == "[]"
