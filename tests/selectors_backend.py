"""A coflow backend written as a user outside coflow would: a ``selectors`` loop.

A probe of the backend kit: it imports only ``coflow``'s public names.  One
scheduler thread runs a ready deque and a ``(when, seq)`` timer heap, and
sleeps in ``select()`` until the next timer is due or another thread posts
work, which writes a byte to a socketpair the selector watches.  ``run`` work
goes to a thread pool, which posts its outcome back.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import random
import selectors
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import coflow

logger = logging.getLogger(__name__)
_LONGEST_SLEEP = 3600.0  # select() and Event.wait() overflow on far longer timeouts


class _Timer:
    """A ``call_later`` handle; cancelled, it drops its callback and waits on the heap."""

    def __init__(self, callback: Any, args: tuple[Any, ...]) -> None:
        self.callback, self.args = callback, args

    def cancel(self) -> None:
        self.callback, self.args = None, ()  # the args hold a task: let its runner go

    def fire(self) -> None:
        if self.callback is not None:
            self.callback(*self.args)


class _PoolWork:
    """A ``start_work`` handle: a pool thread cannot be stopped, so cancel discards its result."""

    future: Future[None]

    def __init__(self, backend: SelectorsBackend, done: Any) -> None:
        self.backend, self.done, self.finished = backend, done, False

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            self.future.cancel()
            self.backend.call_soon(self.done, None, None)  # "at once", but not inside cancel()

    def finish(self, value: Any, error: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            self.done(value, error)


class SelectorsBackend(coflow.Backend):
    name = "selectors"

    def __init__(self, max_workers: int = 8) -> None:
        self.random = random.Random()
        self._ready: deque[tuple[Any, tuple[Any, ...]]] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._posted: list[tuple[Any, tuple[Any, ...]]] = []
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

    def call_soon(self, callback: Any, *args: Any) -> None:
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        if threading.current_thread() is self._thread:
            return self.call_soon(callback, *args)  # FIFO with the scheduler's call_soon
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

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Timer:
        timer = _Timer(callback, args)
        heapq.heappush(self._timers, (self.now() + delay, next(self._order), timer))
        return timer

    def start_work(self, fn: Any, args: tuple[Any, ...], done: Any) -> _PoolWork:
        work = _PoolWork(self, done)
        work.future = self._pool.submit(self._call, work, fn, args)
        return work

    def _call(self, work: _PoolWork, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            value, error = fn(*args), None
        except BaseException as raised:  # even SystemExit: it fails the attempt, not the pool
            value, error = None, raised
        if hasattr(type(value), "__await__"):
            if inspect.iscoroutine(value):
                value.close()
            value, error = None, TypeError(f"the {self.name} backend cannot await {fn!r}")
        try:
            self.call_soon_threadsafe(work.finish, value, error)
        except RuntimeError:
            pass  # closed since: nobody is left to tell

    def wait_latch(self, latch: Any, timeout: float | None, what: str) -> bool:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"waiting for {what} on the {self.name} scheduler thread hangs")
        woken = threading.Event()
        self.call_soon_threadsafe(latch.add_callback, woken.set)
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while not woken.wait(min(deadline - time.monotonic(), _LONGEST_SLEEP)):
            if time.monotonic() >= deadline:
                return False
        return True

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
        ready, timers = self._ready, self._timers
        callback: Any
        args: Any
        while True:
            timeout = 0.0 if ready else _LONGEST_SLEEP
            if timers and not ready:
                timeout = min(max(timers[0][0] - self.now(), 0.0), _LONGEST_SLEEP)
            self._selector.select(timeout)
            with self._lock:
                if self._closed:
                    return self._release()
                while self._woken:  # empty the socket: the next post writes to it again
                    try:
                        self._wake_in.recv(4096)
                    except BlockingIOError:
                        self._woken = False
                ready.extend(self._posted)
                self._posted.clear()
            now = self.now()
            while timers and timers[0][0] <= now:  # due timers run after what is ready
                ready.append((heapq.heappop(timers)[2].fire, ()))
            for _ in range(len(ready)):
                callback, args = ready.popleft()
                try:
                    callback(*args)
                except BaseException:  # the loop serves every flow: it must go on
                    logger.exception("callback %r raised", callback)
            callback = args = None  # held while asleep, they would keep a runner alive

    def _release(self) -> None:
        self._selector.close()
        self._wake_in.close()
        self._wake_out.close()
