"""``GeventBackend``: flows for sync code under gevent (Flask or Django with gevent workers).

The scheduler runs in the hub, as the core's event loop (a ready queue and a
timer heap): one hub callback runs each batch of ready work, and one hub
timer is armed for the earliest deadline, so timers due together fire in the
order they were set, as on every backend.  ``run`` work runs in greenlets;
cancelling it kills the greenlet (``GreenletExit`` is raised in it, so its
``finally`` runs) and the step waits until the greenlet has died.  Other OS
threads post through the hub's thread-safe callback queue.  Works with and
without ``gevent.monkey.patch_all()``.

The scheduler's callbacks run in the hub, so flow code outside ``run`` work
(predicates, ``set_state`` functions, notify callbacks) must not block, as
for any hub callback.  ``backend="gevent"`` (and the default once gevent has
patched ``threading``) is one backend per hub, that is, per OS thread.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from gevent.event import Event
from gevent.greenlet import Greenlet
from gevent.hub import get_hub, getcurrent
from gevent.monkey import get_original

from coflow._backend import Latch, wait_in_thread
from coflow._event_loop import EventLoopBackend
from coflow._work import call_work

# The real thread primitives, even where gevent has patched ``threading``.
_ThreadEvent, _thread_id = get_original("threading", ["Event", "get_ident"])


class _WorkGreenlet(Greenlet):  # type: ignore[misc]
    """A ``run`` attempt in a greenlet, and its handle."""

    def cancel(self) -> None:
        self.kill(block=False)


class GeventBackend(EventLoopBackend):
    """The scheduler runs in the current thread's hub; ``run`` work in greenlets."""

    name = "gevent"

    def __init__(self) -> None:
        super().__init__()
        self._hub = get_hub()
        self._hub_thread = _thread_id()
        self._scheduled = False  # a batch is queued on the hub
        self._timer: Any = None  # the hub timer armed for the next iteration

    def __repr__(self) -> str:
        return f"<GeventBackend hub={self._hub!r}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        if _thread_id() == self._hub_thread:
            self._post(callback, args)  # greenlets of one thread never interleave mid-call
        else:
            self._hub.loop.run_callback_threadsafe(self._post, callback, args)

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> _WorkGreenlet:
        work = _WorkGreenlet(call_work, self.name, fn, args)
        work.rawlink(lambda finished: self._post(done, _outcome(finished)))
        work.start()
        return work

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        # In the hub's thread, block only the calling greenlet; elsewhere, the thread.
        event = Event if _thread_id() == self._hub_thread else _ThreadEvent
        return wait_in_thread(self, latch, timeout, event)

    def scheduler_here(self) -> str | None:
        return "the gevent hub" if getcurrent() is self._hub else None

    def scheduler_in_this_thread(self) -> str | None:
        return "the gevent hub" if _thread_id() == self._hub_thread else None

    def close(self) -> None:
        """Disarm the hub timer; flows still on this backend are no longer woken by time."""
        self._arm(None)

    # -- internals -------------------------------------------------------------------

    def _post(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """In the hub's thread: queue a callback and make sure a batch will run."""
        ready = self._ready
        ready.append(callback)
        ready.append(args)
        if not self._scheduled:
            self._scheduled = True
            self._hub.loop.run_callback(self._serve)

    def _serve(self) -> None:
        """A hub callback: run one batch, then queue the next one or arm the timer."""
        self._scheduled = False
        wait: float | None = 0.0  # if the batch raises, the next one comes at once
        try:
            wait = self.run_iteration()
        finally:  # an error goes on to the hub's handler; the flows still get served
            if wait == 0.0:  # an armed timer may fire meanwhile: a batch is queued, it does nothing
                self._scheduled = True
                self._hub.loop.run_callback(self._serve)  # other greenlets run between batches
            else:
                self._arm(wait)

    def _arm(self, wait: float | None) -> None:
        """Have the hub timer run a batch in ``wait`` seconds; ``None``: disarm it."""
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if wait is not None:
            self._timer = self._hub.loop.timer(wait)
            self._timer.start(self._timer_fired)

    def _timer_fired(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._serve()


def _outcome(work: _WorkGreenlet) -> tuple[Any, BaseException | None]:
    """``call_work``'s ``(value, error)``; a killed greenlet gives ``(None, its exit)``."""
    value = work.value
    if type(value) is tuple:
        return value
    return None, work.exception or value


_by_hub: weakref.WeakKeyDictionary[Any, GeventBackend] = weakref.WeakKeyDictionary()


def default_backend() -> GeventBackend:
    """What ``backend="gevent"`` gives: the current thread's hub's backend, one per hub."""
    hub = get_hub()
    backend = _by_hub.get(hub)
    if backend is None:
        backend = _by_hub[hub] = GeventBackend()
    return backend
