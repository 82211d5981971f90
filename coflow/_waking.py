"""How blocked tasks wake: the rules of ``wait_until``, ``debounce`` and ``receive``, in one place.

A task blocked in one of these steps is registered with its runner
(``block``: the runner's ``blocked`` holds one task, or a list of several, and
its ``mailbox`` the messages not taken), and ``task.waiting`` is the step:

* ``wait_until(pred)`` tests ``pred(state)`` at the ``yield`` and continues at
  once if it holds; else it blocks and is re-tested after every signal and
  every state change (from any task of the runner), never on a timer.
* ``debounce(seconds)`` ends once ``seconds`` pass with no signal or state
  change: each one moves its deadline, and its one timer re-arms when it
  fires before the deadline.
* ``receive(match)`` takes the oldest mailbox message that matches at the
  ``yield``; else it blocks, and each message sent is offered to the blocked
  receivers in the order they blocked; the first that matches takes it, else
  it joins the mailbox.  A message is taken at most once.
* A test that raises, when it runs or when its result is truth-tested (a
  numpy array), wakes the task with that error at its ``yield``; a message
  it was tested on is kept, for the next receiver.
* A ``timeout`` unregisters the task and raises ``FlowTimeout`` at the ``yield``.

What a state change does to a blocked task is looked up by its step's type
in ``ON_CHANGE``; only a ``receive`` is offered messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._errors import FlowTimeout
from ._missing import MISSING
from ._scheduler import SUSPEND, Task
from ._steps import Debounce, Receive, WaitUntil


class Registry(Protocol):
    """What the waking rules keep on a runner: its blocked tasks and its mailbox."""

    blocked: Task | list[Task] | None
    mailbox: deque[Any] | None


def handle_wait_until(task: Task, step: WaitUntil) -> Any:
    state = task.view.state
    if step.predicate(state):  # a raising test or truth test is raised at the ``yield``
        return state
    return _block(task, step, "wait_until")


def handle_receive(task: Task, step: Receive) -> Any:
    message = take_message(task.runner.mailbox, step.match)
    if message is not MISSING:
        return message
    return _block(task, step, "receive")


def _block(task: Task, step: WaitUntil | Receive, what: str) -> Any:
    """Suspend until a state change or a message wakes the task, or its timeout passes."""
    task.waiting = step
    task.blocked_since_now()
    block(task.runner, task)
    if step.timeout is not None:
        timeout = step.timeout
        task.timer = task.runner.backend.call_later(timeout, _timed_out, task, what, timeout)
    return SUSPEND


def _timed_out(task: Task, what: str, seconds: float) -> None:
    unblock(task.runner, task)
    task.timer = None
    task.drive(None, FlowTimeout(what, seconds))


def handle_debounce(task: Task, step: Debounce) -> Any:
    backend = task.runner.backend
    task.waiting = step
    task.deadline = backend.now() + step.seconds
    block(task.runner, task)
    task.timer = backend.call_later(step.seconds, _debounce_check, task)
    return SUSPEND


#: Real clocks may fire a timer a hair early; sooner than this before the deadline re-arms.
_EARLY = 1e-6


def _debounce_check(task: Task) -> None:
    """Signals restart the quiet period without touching the timer: re-arm if it moved."""
    backend = task.runner.backend
    remaining = task.deadline - backend.now()
    if remaining > _EARLY:
        task.timer = backend.call_later(remaining, _debounce_check, task)
        return
    unblock(task.runner, task)
    task.timer = None
    task.drive(task.view.state, None)


def block(registry: Registry, task: Task) -> None:
    """Register ``task`` as waiting on state changes or messages."""
    blocked = registry.blocked
    if blocked is None:
        registry.blocked = task
    elif isinstance(blocked, list):
        blocked.append(task)
    else:
        registry.blocked = [blocked, task]


def unblock(registry: Registry, task: Task) -> None:
    """``task`` waits on state changes and messages no more; harmless if it did not."""
    blocked = registry.blocked
    if blocked is task:
        registry.blocked = None
    elif isinstance(blocked, list) and task in blocked:
        blocked.remove(task)


def _blocked_tasks(blocked: Task | list[Task]) -> list[Task] | tuple[Task]:
    """The blocked tasks, copied: woken tasks unblock while they are walked."""
    return (blocked,) if isinstance(blocked, Task) else list(blocked)


def state_changed(registry: Registry, now: float) -> None:
    """After a signal or a state change: restart every debounce, re-test every ``wait_until``."""
    blocked = registry.blocked
    if blocked is not None:
        for task in _blocked_tasks(blocked):
            on_change = ON_CHANGE.get(task.waiting.__class__)
            if on_change is not None:
                on_change(task, task.waiting, now)


def _restart_quiet(task: Task, step: Debounce, now: float) -> None:
    task.deadline = now + step.seconds


def _retest(task: Task, step: WaitUntil, now: float) -> None:
    _wake_if(task, step.predicate, task.view.state)


#: Blocked step type -> what a state change does to the task blocked in it.
ON_CHANGE: dict[type, Callable[[Task, Any, float], None]] = {
    Debounce: _restart_quiet,
    WaitUntil: _retest,
}


def deliver(registry: Registry, message: Any) -> None:
    """A message sent: the first blocked receiver that matches takes it, else the mailbox."""
    blocked = registry.blocked
    if blocked is not None:
        for task in _blocked_tasks(blocked):
            waiting = task.waiting
            if type(waiting) is Receive and _wake_if(task, waiting.match, message):
                return  # taken: each message goes to one receiver
    if registry.mailbox is None:
        registry.mailbox = deque()
    registry.mailbox.append(message)


def take_message(mailbox: deque[Any] | None, match: Callable[[Any], Any] | None) -> Any:
    """The oldest matching message, removed from the mailbox; ``MISSING`` if none."""
    if mailbox:
        for position, message in enumerate(mailbox):
            if match is None or match(message):  # raising here keeps the message
                del mailbox[position]
                return message
    return MISSING


def _wake_if(task: Task, test: Callable[[Any], Any] | None, value: Any) -> bool:
    """Wake ``task`` with ``value`` if ``test(value)`` holds (or ``test`` is None).

    A raising test wakes the task with its error instead (raised at its
    ``yield``).  True only when the task took ``value``.
    """
    try:
        passed = test is None or bool(test(value))  # truth-tested here: it may raise too
    except BaseException as error:
        unblock(task.runner, task)
        task.wake_soon(None, error)
        return False
    if passed:
        unblock(task.runner, task)
        task.wake_soon(value, None)
    return passed
