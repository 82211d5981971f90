"""``python -m coflow demo``: run the examples and print their notify events as they happen.

The examples live in the source tree's ``examples/`` package.  Each one has
``start(backend, notify) -> list[Runner]``; the demo starts it, prints every
notify event with its time since the example started, and waits for the
runners to end.

On the virtual clock there are two ways to wait.  ``--virtual`` lets
``runner.result()`` jump from timer to timer, so the whole demo takes no
real time.  Otherwise :func:`run_paced` advances the virtual clock in step
with the wall clock, so events appear at the moment they are stamped with.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from ._backend import BACKEND_NAMES, resolve_backend
from ._errors import FlowFailed, FlowStopped
from ._events import FlowDone, FlowState

EXAMPLES = ("sync_book", "import_books", "order_saga")
#: The backends ``--backend`` accepts, and the one used when none is named.
BACKENDS = BACKEND_NAMES
DEFAULT_BACKEND = "virtual"


def load_examples() -> list[ModuleType]:
    """Import the example modules, from the current directory or next to this package."""
    try:
        return [importlib.import_module(f"examples.{name}") for name in EXAMPLES]
    except ModuleNotFoundError as error:
        if error.name not in ("examples", *(f"examples.{name}" for name in EXAMPLES)):
            raise
    source_root = Path(__file__).resolve().parent.parent
    if not (source_root / "examples" / "__init__.py").is_file():
        raise SystemExit(
            "coflow demo: the examples/ package was not found; "
            "run the demo from the root of the coflow source tree"
        )
    sys.path.append(str(source_root))  # after the installed coflow, which must stay first
    return [importlib.import_module(f"examples.{name}") for name in EXAMPLES]


def run_paced(
    backend: Any,
    runners: Iterable[Any],
    *,
    tick: float = 0.005,
    limit: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Drive a virtual backend in step with the wall clock until every runner has ended.

    Every ``tick`` seconds of real time, the virtual clock is advanced by the
    real time that has passed, so each timer fires at its exact virtual time,
    at most ``tick`` seconds late in real time.  Raises ``TimeoutError`` after
    ``limit`` seconds of real time.
    """
    runners = list(runners)
    wall_origin = clock()
    virtual_origin = backend.now()
    backend.run_until_idle()
    while any(runner.status == "running" for runner in runners):
        elapsed = clock() - wall_origin
        if elapsed > limit:
            names = ", ".join(runner.name for runner in runners if runner.status == "running")
            raise TimeoutError(f"still running after {limit:g} s of real time: {names}")
        behind = virtual_origin + elapsed - backend.now()
        if behind > 0:
            backend.advance(behind)
        else:
            backend.run_until_idle()
        if all(runner.status != "running" for runner in runners):
            break
        sleep(tick)


def shorten(value: Any, width: int) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def changes(previous: Any, state: Any) -> str:
    """What a new state changed: ``key=value`` for each changed key of a dict, else the state."""
    if not (isinstance(previous, dict) and isinstance(state, dict)):
        return shorten(state, 100)
    changed = [
        f"{key}={shorten(value, 60)}"
        for key, value in state.items()
        if key not in previous or previous[key] != value
    ]
    changed += [f"-{key}" for key in previous if key not in state]
    return " ".join(changed) or "(unchanged)"


class EventPrinter:
    """The demo's notify: one line per event, with its time since the example began.

    A state is shown as what changed since the flow's previous state, so each line
    says what the event did.
    """

    def __init__(self, backend: Any, out: TextIO) -> None:
        self.backend = backend
        self.out = out
        self.origin = backend.now()
        self.states: dict[Any, Any] = {}
        #: Set when the output was closed (``demo | head``): the demo then stops early.
        self.closed = False

    def write(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:
            self.closed = True

    def begin(self, title: str) -> None:
        self.origin = self.backend.now()
        self.states.clear()
        self.write(f"\n== {title}")

    def watch(self, runners: Iterable[Any]) -> None:
        """Remember each runner's initial state, to show its first event as a change too."""
        for runner in runners:
            self.states.setdefault(runner.id, runner.get_state())

    def __call__(self, event: Any) -> None:
        runner = event.runner
        if isinstance(event, (FlowState, FlowDone)):
            previous = self.states.get(runner.id, _NOTHING)
            self.states[runner.id] = event.state
            text = "" if event.state == previous else changes(previous, event.state)
        else:
            text = shorten(getattr(event, "reason", event), 100)
        kind = type(event).__name__.removeprefix("Flow").lower()
        seconds = self.backend.now() - self.origin
        self.write(f"{seconds:7.3f}  {runner.name:<12}  {kind:<5}  {text}".rstrip())


_NOTHING = object()


def run_demo(
    *,
    backend_name: str | None = None,
    virtual: bool = False,
    out: TextIO | None = None,
    examples: Sequence[ModuleType] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run each example in turn, printing its notify events; return the exit status."""
    out = sys.stdout if out is None else out
    name = "virtual" if virtual else (backend_name or DEFAULT_BACKEND)
    backend = resolve_backend(name)
    mode = "virtual clock, no real time passes" if virtual else "real time"
    printer = EventPrinter(backend, out)
    printer.write(f"coflow demo on the {name} backend ({mode})")
    for example in load_examples() if examples is None else examples:
        if printer.closed:
            break
        title = (example.__doc__ or "").strip().splitlines()[0:1]
        printer.begin(" ".join([example.__name__.rpartition(".")[2] + ":", *title]))
        runners = example.start(backend, printer)
        printer.watch(runners)
        if name == "virtual" and not virtual:
            run_paced(backend, runners, clock=clock, sleep=sleep)
        for runner in runners:
            try:
                runner.result(timeout=30)
            except FlowFailed:
                pass  # already shown: a failed flow's last event is its error
            except FlowStopped:
                # A stopped flow sends no event after the stop; say why it went quiet.
                printer.write(f"{'':7}  {runner.name:<12}  stopped")
    return 1 if printer.closed else 0
