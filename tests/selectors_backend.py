"""A coflow backend written as a user outside coflow would: a ``selectors`` loop on the kit.

It imports only public names (``coflow.backends``).  ``EventLoopBackend``
gives the ready queue, the timer heap and the iteration; this module gives
the clock, how the loop waits, and where work runs.  One scheduler thread
sleeps in ``select()`` for as long as ``run_iteration()`` allows, or until
another thread posts work, which writes a byte to a socketpair the selector
watches.  ``run`` work goes to a thread pool, which posts its outcome back.
Run the conformance suite on it with
``COFLOW_TEST_BACKEND=selectors_backend:SelectorsBackend python -m pytest -m external_backend``.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from coflow.backends import EventLoopBackend, Latch, call_work, wait_in_thread

logger = logging.getLogger(__name__)
_LONGEST_SELECT = 3600.0  # epoll's timeout is an int of milliseconds: far longer ones overflow


class _Work:
    """A pool thread cannot be stopped: cancelled, its step ends now and its result is dropped."""

    future: Future[None]

    def __init__(self, backend: SelectorsBackend, done: Callable[..., Any]) -> None:
        self.backend, self.done = backend, done

    def cancel(self) -> None:
        done, self.done = self.done, None
        if done is not None:  # "at once", but posted: never from inside cancel()
            self.future.cancel()  # if it has not started, it never will
            self.backend.call_soon(done, None, None)

    def finish(self, value: Any, error: BaseException | None) -> None:
        done, self.done = self.done, None
        if done is not None:
            done(value, error)


class SelectorsBackend(EventLoopBackend):
    name = "selectors"

    def __init__(self, max_workers: int = 64) -> None:
        super().__init__()
        self.max_workers = max_workers
        self._posted: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._woken = self._closed = False
        self._thread: threading.Thread | None = None  # started by the first post
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="selectors-work")

    def now(self) -> float:
        return time.monotonic()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        if threading.current_thread() is self._thread:
            return self.call_soon(callback, *args)  # FIFO with the scheduler's own call_soon
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} backend is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="selectors", daemon=True)
                self._thread.start()
            self._posted.append((callback, args))
            if not self._woken:  # one byte per wake-up, however many posts
                self._woken = True
                self._wake_out.send(b"\0")

    def start_work(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Any) -> _Work:
        work = _Work(self, done)
        work.future = self._pool.submit(self._call, work, fn, args)
        return work

    def _call(self, work: _Work, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.call_soon_threadsafe(work.finish, *call_work(self.name, fn, args))
        except RuntimeError:
            pass  # closed since: nobody is left to tell

    def wait_latch(self, latch: Latch, timeout: float | None, what: str) -> bool:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"waiting for {what} on the {self.name} scheduler thread hangs")
        return wait_in_thread(self, latch, timeout)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed, thread = True, self._thread
            self._wake_out.send(b"\0")
        if thread is None:
            self._release()
        elif thread is not threading.current_thread():
            thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        wait: float | None = 0.0
        while True:
            self._selector.select(None if wait is None else min(wait, _LONGEST_SELECT))
            with self._lock:
                if self._closed:
                    return self._release()
                while self._woken:  # empty the socket: the next post writes to it again
                    try:
                        self._wake_in.recv(4096)
                    except BlockingIOError:
                        self._woken = False
                posted, self._posted = self._posted, []
            for callback, args in posted:
                self.call_soon(callback, *args)
            posted = []  # held while asleep, the last post would keep its runner alive
            try:
                wait = self.run_iteration()
            except BaseException:  # the loop serves every flow: even SystemExit must not end it
                logger.exception("a callback raised; the %s backend goes on", self.name)
                wait = 0.0

    def _release(self) -> None:
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()
