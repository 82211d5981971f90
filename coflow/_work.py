"""Calling a ``run`` function where it cannot be awaited (virtual, threads, gevent).

Every backend but asyncio calls work as a plain function.  A coroutine
function (or anything else that returns an awaitable) cannot run there: its
body would never start.  That is an error of the attempt, a ``TypeError``
naming the backend, so it is raised at the flow's ``yield`` like any error of
the work, and the unstarted coroutine is closed so Python does not warn that
it was never awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._step import describe


def call_work(
    backend_name: str, fn: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Any, BaseException | None]:
    """``(fn(*args), None)``, or ``(None, error)`` if it raised or gave an awaitable.

    Any ``BaseException`` is caught too (``SystemExit``, ``KeyboardInterrupt``,
    ``GreenletExit``): it fails the attempt, and the scheduler goes on (SPEC §9).
    """
    try:
        value = fn(*args)
    except BaseException as error:
        return None, error
    if hasattr(value.__class__, "__await__"):
        if inspect.iscoroutine(value):
            value.close()
        return None, cannot_await(backend_name, fn)
    return value, None


def cannot_await(backend_name: str, fn: Callable[..., Any]) -> TypeError:
    return TypeError(
        f"{describe(fn)} gave an awaitable (is it a coroutine function?), which the "
        f"{backend_name} backend cannot await; give a plain function, or use the asyncio backend"
    )
