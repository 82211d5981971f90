"""``ThreadBackend``: flows for sync code, on one scheduler thread and a thread pool.

The scheduler is one daemon thread running the core's event loop (a ready
queue and a timer heap): it sleeps until the next timer is due or another
thread posts work through a ``SimpleQueue``.  ``run`` work goes to a thread
pool.  A pool thread cannot be interrupted, so cancelling its work ends the
step at once and the thread's late result is discarded.

``backend="threads"`` (and the default outside asyncio and gevent) is one
process-wide instance, made on first use and closed at interpreter exit; it
starts its scheduler thread on first use, so runners add no threads.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from coflow._backend import Latch, wait_in_thread
from coflow._event_loop import EventLoopBackend
from coflow._validate import check_count
from coflow._work import call_work

logger = logging.getLogger("coflow")

#: Pool size when none is given: work is mostly I/O-bound (HTTP calls, queries), and
#: threads are only made when no idle one is left.
DEFAULT_MAX_WORKERS = 64
#: A later deadline is slept towards in pieces: a longer timeout would raise OverflowError.
_LONGEST_SLEEP = threading.TIMEOUT_MAX


class _PoolWork:
    """A ``run`` attempt on a pool thread, and its handle.

    ``done`` is dropped once called: the step that holds this handle is what
    ``done`` resumes, and a handle that kept it would make a reference cycle
    only the garbage collector could free.
    """

    __slots__ = ("backend", "done", "future")
    future: Future[None]

    def __init__(self, backend: ThreadBackend, done: Callable[[Any, BaseException | None], Any]):
        self.backend = backend
        self.done: Callable[[Any, BaseException | None], Any] | None = done

    def cancel(self) -> None:
        """On the scheduler: end the step now; a thread already running is left to finish."""
        done, self.done = self.done, None
        if done is not None:
            self.future.cancel()
            self.backend.call_soon(done, None, None)

    def finish(self, value: Any, error: BaseException | None) -> None:
        """On the scheduler: report the outcome, unless the work was cancelled first."""
        done, self.done = self.done, None
        if done is not None:
            done(value, error)


class ThreadBackend(EventLoopBackend):
    """One scheduler thread for all its runners; ``run`` work on a pool of ``max_workers``."""

    name = "threads"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        workers = check_count("ThreadBackend", "max_workers", max_workers, 1, optional=True)
        #: The most pool threads ``run`` work gets; they are made as needed.
        self.max_workers = workers or DEFAULT_MAX_WORKERS
        self._posted: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None]
        self._posted = queue.SimpleQueue()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._closed = False
        self._scheduler_ident: int | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._thread else "idle"
        return f"<ThreadBackend {state} max_workers={self.max_workers}>"

    # -- the backend interface ---------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._scheduler_ident:
            self._ready.extend((callback, args))  # from a callback: FIFO with call_soon
            return
        if self._thread is None:
            self._start()
        self._posted.put((callback, args))

    def start_work(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, BaseException | None], Any],
    ) -> _PoolWork:
        work = _PoolWork(self, done)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="coflow-work")
        work.future = self._pool.submit(self._call, work, fn, args)
        return work

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                f"waiting for {what} on the threads backend's scheduler thread would wait "
                "forever: that thread is the one that runs it"
            )
        return wait_in_thread(self, latch, timeout)

    def close(self) -> None:
        """Stop the scheduler thread and the pool; waits for neither's running work."""
        with self._starting:
            self._closed = True
            thread, self._thread = self._thread, None  # so a later post raises: see _start
        if thread is not None:
            self._posted.put(None)
            if thread is not threading.current_thread():
                thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals -------------------------------------------------------------------

    def _start(self) -> None:
        with self._starting:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed: it runs no more flows")
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="coflow-scheduler", daemon=True)
                self._thread = thread
                thread.start()

    def _call(self, work: _PoolWork, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """On a pool thread: run the work, then hand its outcome to the scheduler."""
        self._posted.put((work.finish, call_work(self.name, fn, args)))

    def _serve(self) -> None:
        """The scheduler thread: run an iteration, then sleep until a timer or a post."""
        self._scheduler_ident = threading.get_ident()
        ready, posted = self._ready, self._posted
        sleep: float | None = 0.0
        while True:
            if sleep != 0.0:
                try:
                    item = posted.get(timeout=None if sleep is None else min(sleep, _LONGEST_SLEEP))
                except queue.Empty:
                    pass
                else:
                    if item is None:
                        return
                    ready.extend(item)
            while not posted.empty():
                item = posted.get_nowait()
                if item is None:
                    return
                ready.extend(item)
            item = None  # held while idle, the last post would keep its runner alive
            try:
                sleep = self.run_iteration()
            except BaseException:  # even SystemExit: every flow in the process depends on it
                logger.exception("a scheduler callback raised; the threads backend goes on")
                sleep = 0.0


_default: ThreadBackend | None = None
_default_lock = threading.Lock()


def default_backend() -> ThreadBackend:
    """What ``backend="threads"`` gives: the process-wide instance, closed at exit."""
    global _default
    if _default is not None:
        return _default
    with _default_lock:
        if _default is None:
            _default = ThreadBackend()
            atexit.register(_default.close)
        return _default
