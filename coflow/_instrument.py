"""Process-wide hooks into the core: the private seed of an instrumentation API.

``started_hooks`` holds callables that ``launch`` calls with each runner it
makes (a root started with ``coflow.start`` or a child of ``call`` or
``spawn``), before the runner's first step is posted.  With none installed
they cost one truthiness check per start.  Install with ``append`` and
remove with ``remove``: the list is never rebound, so the core's reference
to it stays the one in use.  A hook runs on the thread that starts the
runner (for a child, the scheduler's) and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["started_hooks"]

#: Called with each runner ``launch`` makes; the pytest plugin tracks runners with it.
started_hooks: list[Callable[[Runner], None]] = []
