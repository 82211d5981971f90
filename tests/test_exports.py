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


def test_importing_coflow_imports_no_backend_library() -> None:
    probe = (
        "import coflow, sys; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'asyncio', 'gevent', 'greenlet'}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(coflow.__file__))),
    )
    assert completed.stdout.strip() == "[]", completed.stdout
