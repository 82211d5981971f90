"""coflow: composable, ephemeral workflows written as plain Python generators.

A flow yields steps (``wait``, ``wait_until``, ``debounce``, ``run``,
``parallel``, ...); a small scheduler interprets them on a backend (asyncio,
gevent, threads, or a virtual clock for tests).  ``start`` runs a flow and
returns its ``Runner``.
"""

from __future__ import annotations

from . import _dispatch as _dispatch  # fills the step loop's table of handlers
from ._backend import Backend as Backend
from ._errors import (
    Cancelled as Cancelled,
    ChildFailed as ChildFailed,
    Deadlock as Deadlock,
    FlowException as FlowException,
    FlowFailed as FlowFailed,
    FlowNotRunning as FlowNotRunning,
    FlowStopped as FlowStopped,
    FlowTimeout as FlowTimeout,
    InvalidStep as InvalidStep,
    RetriesExhausted as RetriesExhausted,
    StepFailed as StepFailed,
)
from ._events import (
    FlowDone as FlowDone,
    FlowError as FlowError,
    FlowRestarted as FlowRestarted,
    FlowState as FlowState,
)
from ._flow import Flow as Flow, FlowGenerator as FlowGenerator, flow as flow
from ._history import HistoryRecorder as HistoryRecorder
from ._inspect import inspect as inspect, stuck as stuck
from ._instrument import (
    Instrument as Instrument,
    add_instrument as add_instrument,
    remove_instrument as remove_instrument,
)
from ._results import (
    Error as Error,
    Failure as Failure,
    Ok as Ok,
    Retry as Retry,
    Skip as Skip,
    Update as Update,
)
from ._retry import RetryPolicy as RetryPolicy
from ._runner import EventStream as EventStream, Runner as Runner, start as start
from ._step import Step as Step
from ._steps import (
    branch as branch,
    call as call,
    debounce as debounce,
    each as each,
    embed as embed,
    get_state as get_state,
    parallel as parallel,
    race as race,
    receive as receive,
    repeat as repeat,
    run as run,
    sequence as sequence,
    set_state as set_state,
    spawn as spawn,
    timeout as timeout,
    wait as wait,
    wait_until as wait_until,
)
from ._supervisor import Supervisor as Supervisor

__all__ = [
    "Backend",
    "Cancelled",
    "ChildFailed",
    "Deadlock",
    "Error",
    "EventStream",
    "Failure",
    "Flow",
    "FlowGenerator",
    "FlowDone",
    "FlowError",
    "FlowException",
    "FlowFailed",
    "FlowNotRunning",
    "FlowRestarted",
    "FlowState",
    "FlowStopped",
    "FlowTimeout",
    "HistoryRecorder",
    "Instrument",
    "InvalidStep",
    "Ok",
    "Retry",
    "RetriesExhausted",
    "RetryPolicy",
    "Runner",
    "Skip",
    "Step",
    "StepFailed",
    "Supervisor",
    "Update",
    "branch",
    "add_instrument",
    "call",
    "debounce",
    "each",
    "embed",
    "flow",
    "get_state",
    "inspect",
    "parallel",
    "race",
    "receive",
    "remove_instrument",
    "repeat",
    "run",
    "sequence",
    "set_state",
    "spawn",
    "start",
    "stuck",
    "timeout",
    "wait",
    "wait_until",
]

# Public objects say they live in ``coflow``, not in the private module that defines them.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("coflow._"):
        _obj.__module__ = __name__
del _name, _obj
