"""``HistoryRecorder``: an instrument keeping each runner's last events, for a post-mortem.

Opt-in and bounded: install it (``coflow.add_instrument`` or a supervisor's
``instruments=``) and each runner it sees keeps its ``limit`` latest events;
a runner's history goes when the runner is collected.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._instrument import Instrument

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["HistoryRecorder"]

Event = tuple[float, str, str]


def _name(error: BaseException | None) -> str:
    return "" if error is None else repr(error)[:80]


class HistoryRecorder(Instrument):
    """Keeps the ``limit`` latest ``(now, event, detail)`` of every runner it sees."""

    def __init__(self, limit: int = 100) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"HistoryRecorder: limit must be an int >= 1, got {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._events: weakref.WeakKeyDictionary[Runner, deque[Event]] = (
            weakref.WeakKeyDictionary()
        )

    def history(self, runner: Runner) -> list[Event]:
        """The runner's latest events, oldest first (any thread)."""
        with self._lock:
            return list(self._events.get(runner, ()))

    def _add(self, runner: Runner, now: float, event: str, detail: str = "") -> None:
        with self._lock:
            events = self._events.get(runner)
            if events is None:
                events = self._events[runner] = deque(maxlen=self.limit)
            events.append((now, event, detail))

    def runner_started(self, runner: Runner, now: float) -> None:
        self._add(runner, now, "runner_started")

    def runner_ended(self, runner: Runner, now: float) -> None:
        self._add(runner, now, "runner_ended", f"{runner.status} {_name(runner.error)}".strip())

    def step_began(self, runner: Runner, step: Any, now: float) -> None:
        self._add(runner, now, "step_began", repr(step)[:80])

    def step_blocked(self, runner: Runner, step: Any, now: float) -> None:
        self._add(runner, now, "step_blocked", repr(step)[:80])

    def step_woken(self, runner: Runner, step: Any, now: float) -> None:
        self._add(runner, now, "step_woken", repr(step)[:80])

    def step_ended(
        self, runner: Runner, step: Any, error: BaseException | None, now: float
    ) -> None:
        self._add(runner, now, "step_ended", f"{repr(step)[:80]} {_name(error)}".strip())

    def work_started(self, runner: Runner, step: Any, attempt: int, now: float) -> None:
        self._add(runner, now, "work_started", f"attempt {attempt}")

    def work_ended(
        self, runner: Runner, step: Any, attempt: int, error: BaseException | None, now: float
    ) -> None:
        self._add(runner, now, "work_ended", f"attempt {attempt} {_name(error)}".strip())

    def retry(
        self,
        runner: Runner,
        step: Any,
        attempt: int,
        delay: float,
        error: BaseException,
        now: float,
    ) -> None:
        self._add(runner, now, "retry", f"attempt {attempt} failed, next in {delay:g}s")

    def restarted(self, runner: Runner, reason: BaseException | None, now: float) -> None:
        self._add(runner, now, "restarted", _name(reason))
