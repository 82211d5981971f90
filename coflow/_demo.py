"""``python -m coflow demo``: run the examples and print their notify events as they happen.

The examples live in the source tree's ``examples/`` package.  Each one has
``start(backend, notify) -> list[Runner]``; the demo starts it, prints every
notify event with its time since the example started, and waits for the
runners to end, as an application on that backend would: by blocking on
``runner.result()`` for threads and gevent (from the main greenlet), and
inside ``asyncio.run`` with ``await runner.wait()`` for asyncio; then for the
children each runner started (a spawned child may outlive its parent).  On
the virtual clock ``runner.result()`` jumps from timer to timer, so the whole
demo takes no real time.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from ._backend import Backend, resolve_backend
from ._errors import FlowFailed, FlowStopped
from ._events import FlowDone, FlowError, FlowRestarted, FlowState
from ._runner import Runner, start
from ._steps import set_state

EXAMPLES = ("sync_book", "import_books", "order_saga", "order_pipeline", "flaky_supervised")
#: The backend used when none is named; ``--backend`` takes any of ``backend_names()``.
DEFAULT_BACKEND = "threads"
#: Seconds to wait for one flow of an example (the longest takes 1.6 s) before giving up.
LIMIT = 30.0
#: The width of the column of flow names (a child is named after its parents: ``order-1>email``).
NAME_WIDTH = 20
#: What a note of the supervisor giving up on a flow begins with.
GAVE_UP = "coflow: the supervisor gave up"


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


def shorten(value: Any, width: int) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def label(runner: Runner) -> str:
    """The runner's name; a child's after its parent's, as in ``order-1>payment_flow``."""
    return ">".join(runner.lineage())


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
    says what the event did; a child flow's first state, whose initial state the
    printer never saw, is shown whole.  A supervisor's restart is shown with its
    count and reason, and the state that follows it as the initial one.  Events
    arrive on the backend's scheduler while the demo's own thread reports stopped
    flows, so lines are written under a lock.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.backend: Backend | None = None
        self.origin = 0.0
        self.states: dict[int, Any] = {}
        #: Runners just restarted: their next state is their initial one.
        self.restarted: set[int] = set()
        self.lock = threading.Lock()
        #: Set when the output was closed (``demo | head``): the demo then stops early.
        self.closed = False

    def write(self, line: str) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except BrokenPipeError:
                self.closed = True

    def begin(self, backend: Backend, example: ModuleType) -> None:
        self.backend = backend
        self.origin = backend.now()
        self.states.clear()
        self.restarted.clear()
        title = (example.__doc__ or "").strip().splitlines()[0:1]
        self.write("\n== " + " ".join([example.__name__.rpartition(".")[2] + ":", *title]))

    def watch(self, runners: Iterable[Runner]) -> None:
        """Remember each runner's initial state, to show its first event as a change too."""
        for runner in runners:
            self.states[runner.id] = runner.get_state()

    def ended(self, runner: Runner, end: FlowFailed | FlowStopped) -> None:
        """A failed flow's last event is its error; a stopped one sends none, so say so."""
        if isinstance(end, FlowStopped):
            self.write(f"{'':7}  {label(runner):<{NAME_WIDTH}}  stopped")

    def __call__(self, event: Any) -> None:
        runner = event.runner
        kind = type(event).__name__.removeprefix("Flow").lower()
        if isinstance(event, (FlowState, FlowDone)):
            previous = self.states.get(runner.id, _NOTHING)
            self.states[runner.id] = event.state
            text = "" if event.state == previous else changes(previous, event.state)
            if runner.id in self.restarted and isinstance(event, FlowState):
                self.restarted.discard(runner.id)
                text = f"(initial) {text or '(unchanged)'}"
        elif isinstance(event, FlowRestarted):
            self.restarted.add(runner.id)
            kind = "restart"
            why = "a normal end" if event.reason is None else shorten(event.reason, 80)
            text = f"#{runner.restarts} after {why}"
        elif isinstance(event, FlowError):
            notes = getattr(event.reason, "__notes__", ())
            if any(str(note).startswith(GAVE_UP) for note in notes):
                text = f"{shorten(event.reason, 80)}; the supervisor gave up"
            else:
                text = shorten(event.reason, 100)
        else:
            text = shorten(event, 100)
        seconds = runner.backend.now() - self.origin
        self.write(f"{seconds:7.3f}  {label(runner):<{NAME_WIDTH}}  {kind:<5}  {text}".rstrip())


_NOTHING = object()


def start_example(example: ModuleType, backend: Backend, printer: EventPrinter) -> Runner:
    """Start ``example`` from a flow on ``backend``; its final state is the example's runners.

    Starting on the scheduler means none of the example's flows takes a step
    before the printer has noted their initial states, on every backend.
    """
    printer.begin(backend, example)

    def start_and_watch(_: Any) -> list[Runner]:
        runners: list[Runner] = example.start(backend, printer)
        printer.watch(runners)
        return runners

    return start(set_state(start_and_watch), backend=backend, name="demo")


def run_examples(backend: Backend, printer: EventPrinter, examples: Sequence[ModuleType]) -> None:
    """Run each example in turn, blocking this thread (or greenlet) on each runner."""
    for example in examples:
        if printer.closed:
            break
        for runner in start_example(example, backend, printer).result(timeout=LIMIT):
            wait_for(runner, printer)


def wait_for(runner: Runner, printer: EventPrinter) -> None:
    """Block until ``runner`` has ended, then until its children have."""
    try:
        runner.result(timeout=LIMIT)
    except (FlowFailed, FlowStopped) as end:
        printer.ended(runner, end)
    for child in runner.children():
        wait_for(child, printer)


async def run_examples_async(printer: EventPrinter, examples: Sequence[ModuleType]) -> None:
    """Run each example in turn on the running loop's backend, awaiting each runner."""
    import asyncio  # only the asyncio demo needs it: coflow imports no backend library

    backend = resolve_backend("asyncio")
    for example in examples:
        if printer.closed:
            break
        runners = await asyncio.wait_for(start_example(example, backend, printer).wait(), LIMIT)
        for runner in runners:
            await wait_for_async(runner, printer)


async def wait_for_async(runner: Runner, printer: EventPrinter) -> None:
    """Await ``runner``'s end, then its children's."""
    import asyncio

    try:
        await asyncio.wait_for(runner.wait(), LIMIT)
    except (FlowFailed, FlowStopped) as end:
        printer.ended(runner, end)
    for child in runner.children():
        await wait_for_async(child, printer)


class OneLine(logging.Formatter):
    """A log record as one line, without its traceback: the demo's events tell the rest."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.name}: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def brief_logs() -> Iterator[None]:
    """Unless logging is set up, show coflow's log records (restarts) on one line each.

    With no handler anywhere, Python would print each with its traceback.
    """
    logger = logging.getLogger("coflow")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler()  # sys.stderr, as Python's last-resort handler
    handler.setFormatter(OneLine())
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def run_demo(
    *,
    backend_name: str | None = None,
    virtual: bool = False,
    out: TextIO | None = None,
    examples: Sequence[ModuleType] | None = None,
) -> int:
    """Run each example in turn on the named backend, printing its events; the exit status."""
    name = "virtual" if virtual else (backend_name or DEFAULT_BACKEND)
    # asyncio's backend belongs to a loop, made by asyncio.run below; the others exist now.
    backend = None if name == "asyncio" else resolve_backend(name)
    printer = EventPrinter(sys.stdout if out is None else out)
    examples = load_examples() if examples is None else examples
    mode = "virtual clock, no real time passes" if name == "virtual" else "real time"
    printer.write(f"coflow demo on the {name} backend ({mode})")
    with brief_logs():
        if backend is None:
            import asyncio

            asyncio.run(run_examples_async(printer, examples))
        else:
            run_examples(backend, printer, examples)
    return 1 if printer.closed else 0
