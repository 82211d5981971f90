"""The backends, and the kit for writing one: what a backend gives the scheduler.

The adapters are modules of this package (``coflow.backends.threads``, ...);
each imports its own library only when it is imported, and ``start`` imports
one only when its name is asked for.  Importing ``coflow.backends`` imports
none of them.

A backend written outside coflow builds on the names here:

- :class:`Backend`, the interface the scheduler calls; :class:`Handle`, what
  ``call_later`` and ``start_work`` return; :class:`Latch`, what ``wait_latch``
  blocks on;
- :class:`EventLoopBackend`, a ``Backend`` with the core's ready queue and
  timer heap, which the subclass drives with ``run_iteration()`` and waits
  between iterations as its library does;
- :func:`wait_in_thread`, ``wait_latch`` for a caller that may block its thread;
- :func:`call_work`, calling ``run`` work where nothing can await it;
- :func:`register_backend`, so that ``start(backend="name")`` finds it, and
  :func:`backend_names`, the names it takes.

docs/architecture.md ("Writing a backend") is the checklist.
"""

from __future__ import annotations

from coflow._backend import (
    Backend as Backend,
    Handle as Handle,
    Latch as Latch,
    backend_names as backend_names,
    register_backend as register_backend,
    wait_in_thread as wait_in_thread,
)
from coflow._event_loop import EventLoopBackend as EventLoopBackend
from coflow._work import call_work as call_work

__all__ = [
    "Backend",
    "EventLoopBackend",
    "Handle",
    "Latch",
    "backend_names",
    "call_work",
    "register_backend",
    "wait_in_thread",
]

# Kit names say they live here, not in the private module that defines them; ``Backend``
# stays ``coflow.Backend``, where it is exported first.
_KIT = (EventLoopBackend, Handle, Latch, backend_names, call_work, register_backend, wait_in_thread)
for _kit in _KIT:
    _kit.__module__ = __name__
del _KIT, _kit
