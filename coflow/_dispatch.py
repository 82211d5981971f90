"""The step loop's table: every step type, and the handler that runs it, in one place.

``Task.drive`` runs ``set_state`` and ``wait`` itself (the commonest steps);
every other step is looked up here by its type.  A value of no type here goes
to ``handle_other``: a ``Flow`` or generator function yielded as a sub-flow,
or a mistake, named at its ``yield``.  A new step adds one line here (see
"Writing a step" in docs/architecture.md).

The handlers import the scheduler, so the scheduler cannot import them: this
module fills its table, and ``coflow`` imports this module first.
"""

from __future__ import annotations

import types

from . import _children, _handlers, _waking
from ._scheduler import DISPATCH, FALLBACK
from ._steps import (
    Branch,
    Call,
    Debounce,
    Each,
    Embed,
    GetState,
    Parallel,
    Race,
    Receive,
    Repeat,
    Run,
    Sequence,
    Spawn,
    Timeout,
    WaitUntil,
)

DISPATCH.update(
    {
        # state and time (set_state and wait: in the step loop itself)
        GetState: _handlers.handle_get_state,
        WaitUntil: _waking.handle_wait_until,
        Debounce: _waking.handle_debounce,
        Receive: _waking.handle_receive,
        # work
        Run: _handlers.handle_run,
        _handlers.Work: _handlers.handle_work,
        # composition
        Sequence: _handlers.handle_sequence,
        Repeat: _handlers.handle_repeat,
        Branch: _handlers.handle_branch,
        Each: _handlers.handle_each,
        _handlers.Tick: _handlers.handle_tick,
        Parallel: _handlers.handle_parallel,
        Race: _handlers.handle_race,
        Timeout: _handlers.handle_timeout,
        Embed: _handlers.handle_embed,
        # child flows
        Call: _children.handle_call,
        Spawn: _children.handle_spawn,
        # a generator object yielded: a sub-flow
        types.GeneratorType: _handlers.push_frame,
    }
)
FALLBACK.append(_handlers.handle_other)
