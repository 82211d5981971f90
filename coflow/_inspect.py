"""``coflow.inspect()`` and ``coflow.stuck()``: a snapshot of every live runner, as a tree.

It reads the live runners among the objects the garbage collector tracks (``live_runners``)
and costs the step loop nothing: everything it shows is read from what the
scheduler keeps anyway (the task's frames, what it waits on, its deadline).
It may run in any thread while flows run: each attribute is read once into a
local, and a runner that changes meanwhile is shown as it was at one of
those reads, never half-built.

``waiting_since`` is exact for a runner that reports to an instrument, for a
``wait`` on an event-loop backend (its deadline less its seconds), and for
``wait_until``, ``receive``, ``run`` work, a join of branches, a child call
and a stop waiting for children, which note when they block; else (a
``debounce``, whose start a signal moves, or a ``wait`` on asyncio) it is None.
"""

from __future__ import annotations

import reprlib
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ._children import ChildWait
from ._event_loop import TimerHeap
from ._handlers import Work, _AllJoin, _RaceJoin, _TimeoutJoin
from ._instrument import live_runners
from ._links import Links
from ._location import is_user_frame
from ._runner import Runner
from ._scheduler import Join, Task
from ._step import describe
from ._steps import Debounce, Receive, Wait, WaitUntil

__all__ = ["RunnerInfo", "Snapshot", "SupervisorInfo", "Waiting", "inspect", "stuck"]

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlevel = 3
#: The longest summary of a state or step.
_LONGEST = 80


@dataclass(frozen=True)
class Waiting:
    """What a blocked flow waits on.

    ``kind``: ``"timer"`` (a ``wait``, ``deadline`` set), ``"debounce"``
    (``deadline``: the end of the quiet period as it stands), ``"predicate"``
    (``wait_until``), ``"receive"`` (``match``: the test, or None for any
    message), ``"work"`` (``attempt``, from 1), ``"children"`` (a call, a join of
    branches, or children ending before a stop completes).
    """

    kind: str
    deadline: float | None = None
    match: str | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class RunnerInfo:
    """One live runner, as it was when the snapshot read it."""

    id: int
    name: str
    #: The names from the outermost parent down to this runner: ``"order > payment"``.
    path: str
    status: str
    #: A short repr of the state (at most 80 characters).
    state: str
    #: The step it is blocked in (a short repr), or None while it runs or is ready.
    step: str | None
    #: ``file:line`` of the ``yield`` of its innermost flow.
    site: str | None
    waiting: Waiting | None
    #: The backend's time when it blocked, when known (see the module docstring).
    waiting_since: float | None
    restarts: int
    #: The backend's time when the snapshot read it: what ``stuck`` compares with.
    now: float
    children: tuple[RunnerInfo, ...] = ()
    #: The id of the supervisor that restarts it (``Snapshot.supervisors``), if any.
    supervisor: int | None = None

    def walk(self) -> Iterator[RunnerInfo]:
        """This runner and its descendants, parents first."""
        stack = [self]
        while stack:
            info = stack.pop()
            yield info
            stack.extend(reversed(info.children))


@dataclass(frozen=True)
class SupervisorInfo:
    """A supervisor with live runners: its ``repr`` and the ids of the runners it supervises."""

    id: int
    description: str
    runners: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """Every live runner of the process: ``roots`` (no parent), each with its children."""

    roots: tuple[RunnerInfo, ...]
    supervisors: tuple[SupervisorInfo, ...]

    def runners(self) -> list[RunnerInfo]:
        """Every runner of the tree, parents first."""
        return [info for root in self.roots for info in root.walk()]

    def find(self, name: str) -> list[RunnerInfo]:
        """The runners named ``name``."""
        return [info for info in self.runners() if info.name == name]


def _short(value: Any) -> str:
    try:
        text = repr(value) if _plain(value) else _SHORT.repr(value)
    except Exception as error:  # a user's __repr__: shown, never raised into the snapshot
        text = f"<unrepresentable {type(value).__name__}: {error!r}>"
    return text if len(text) <= _LONGEST else text[: _LONGEST - 3] + "..."


def _plain(value: Any) -> bool:
    """Whether the builtin ``repr`` of ``value`` is bounded, so it can be its summary.

    ``reprlib`` bounds only builtin containers, strings and ints; anything else
    it shows by its ``repr`` too.  A small dict, list or tuple of numbers and
    short strings (the commonest state) is bounded as it is, and ``repr`` shows
    it ten times faster than ``reprlib``.
    """
    cls = value.__class__
    if cls not in _BOUNDED:
        return True
    if cls in _SMALL_CONTAINERS:
        if len(value) > _FEW:
            return False
        items = value.items() if cls is dict else ((item, None) for item in value)
        return all(_atom(key) and _atom(item) for key, item in items)
    return _atom(value)


def _atom(value: Any) -> bool:
    cls = value.__class__
    if cls is str:
        return len(value) <= _LONGEST
    if cls is int:
        return bool(-_BIG < value < _BIG)
    return cls is float or cls is bool or value is None


#: What ``reprlib`` shows otherwise than by its builtin ``repr``, when it is big.
_BOUNDED = frozenset({dict, list, tuple, set, frozenset, deque, str, int})
_SMALL_CONTAINERS = frozenset({dict, list, tuple})
#: Up to this many atoms in a container are shown by the builtin ``repr``.
_FEW = 8
#: Ints up to this size (in magnitude) have a short ``repr``.
_BIG = 10**18


def _site(task: Task) -> str | None:
    """``file:line`` of the innermost user frame's ``yield``, in the task's stack."""
    for gen in reversed(task.frames()):
        if is_user_frame(gen):
            frame = gen.gi_frame  # type: ignore[attr-defined]
            if frame is not None:
                return f"{frame.f_code.co_filename}:{frame.f_lineno}"
    return None


def _blocked_task(root: Task) -> Task:
    """The task to describe: the root, or for a join the first branch still blocked."""
    task = root
    for _ in range(sys.getrecursionlimit()):
        waiting = task.waiting
        if not isinstance(waiting, Join):
            return task
        branches = [child for child in list(waiting.children) if isinstance(child, Task)]
        blocked = [child for child in branches if child.waiting is not None]
        if not blocked:
            return task
        task = blocked[0]
    return task


_JOINS = {_AllJoin: "parallel", _RaceJoin: "race", _TimeoutJoin: "timeout", Join: "embed"}


def _waiting(task: Task, now: float) -> tuple[str | None, Waiting | None, float | None]:
    """The step ``task`` is blocked in, what it waits on, and since when."""
    waiting = task.waiting
    if waiting is None:
        return None, None, None
    since: float | None = getattr(task, "since", None)  # kept by a reporting task
    reported = since is not None
    deadline = task.deadline
    cls = waiting.__class__
    if cls is Wait:
        assert isinstance(waiting, Wait)
        if not reported and task.timer.__class__ is TimerHeap:
            since = deadline - waiting.seconds
        known = reported or task.timer.__class__ is TimerHeap
        return _short(waiting), Waiting("timer", deadline if known else None), since
    if cls is Debounce:
        return _short(waiting), Waiting("debounce", deadline), since
    if cls is WaitUntil:
        assert isinstance(waiting, WaitUntil)
        test = describe(waiting.predicate)
        return _short(waiting), Waiting("predicate", match=test), since if reported else deadline
    if cls is Receive:
        assert isinstance(waiting, Receive)
        match = None if waiting.match is None else describe(waiting.match)
        return _short(waiting), Waiting("receive", match=match), since if reported else deadline
    if isinstance(waiting, Work):
        step = f"run({describe(waiting.fn)})"
        return step, Waiting("work", attempt=waiting.attempt), waiting.since
    if isinstance(waiting, (ChildWait, Join, Links)):
        noted = since if reported else deadline  # when it blocked (``Task.blocked_since_now``)
        if isinstance(waiting, ChildWait):
            return f"call({waiting.child.name})", Waiting("children"), noted
        joined = _JOINS.get(cls, "join") if isinstance(waiting, Join) else None
        return joined, Waiting("children"), noted
    return _short(waiting), Waiting(cls.__name__.lower()), since


def _info(runner: Runner) -> RunnerInfo:
    root = runner.root
    now = runner.backend.now()
    step = site = None
    waiting = since = None
    if root is not None:
        task = _blocked_task(root)
        step, waiting, since = _waiting(task, now)
        site = _site(task)
    links = runner._links
    supervisor = links.supervisor if links is not None else None
    return _made(
        RunnerInfo,
        id=runner.id,
        name=runner.name,
        path=" > ".join(runner.lineage()),
        status=runner.status,
        state=_short(runner.state),
        step=step,
        site=site,
        waiting=waiting,
        waiting_since=since,
        restarts=runner.restarts,
        now=now,
        children=(),
        supervisor=None if supervisor is None else id(supervisor),
    )


_Frozen = TypeVar("_Frozen")


def _made(cls: type[_Frozen], **fields: Any) -> _Frozen:
    """An instance of the frozen dataclass ``cls``, given every field: its dict is filled at
    once, where ``__init__`` would make a frozen ``__setattr__`` call per field (a snapshot of
    10,000 runners spent a sixth of its time there)."""
    made = object.__new__(cls)
    made.__dict__.update(fields)
    return made


def _with_children(info: RunnerInfo, below: dict[int, list[RunnerInfo]]) -> RunnerInfo:
    """``info`` with its descendants attached, built bottom-up with a stack, not recursion."""
    order: list[RunnerInfo] = []
    stack = [info]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(below.get(node.id, ()))
    built: dict[int, RunnerInfo] = {}
    for node in reversed(order):
        kids = tuple(built[kid.id] for kid in below.get(node.id, ()))
        built[node.id] = RunnerInfo(**{**node.__dict__, "children": kids}) if kids else node
    return built[info.id]


def inspect() -> Snapshot:
    """A snapshot of every live runner in the process (from any thread)."""
    runners = live_runners()
    infos = [_info(runner) for runner in runners]
    below: dict[int, list[RunnerInfo]] = {}
    roots: list[RunnerInfo] = []
    by_id = {info.id: info for info in infos}
    supervised: dict[int, tuple[str, list[int]]] = {}
    for runner, info in zip(runners, infos):
        parent = runner.parent
        if parent is not None and parent.id in by_id:
            below.setdefault(parent.id, []).append(info)
        else:
            roots.append(info)
        links = runner._links
        supervisor = links.supervisor if links is not None else None
        if supervisor is not None:
            supervised.setdefault(id(supervisor), (repr(supervisor), []))[1].append(info.id)
    return Snapshot(
        roots=tuple(_with_children(root, below) if below else root for root in roots),
        supervisors=tuple(
            SupervisorInfo(key, description, tuple(ids))
            for key, (description, ids) in supervised.items()
        ),
    )


def stuck(older_than: float) -> list[RunnerInfo]:
    """The live runners blocked for more than ``older_than`` seconds of their backend's clock."""
    return [
        info
        for info in inspect().runners()
        if info.waiting_since is not None and info.now - info.waiting_since > older_than
    ]
