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

from ._errors import FlowFailed, FlowStopped

EXAMPLES = ("sync_book", "import_books", "order_saga")
#: The backends ``--backend`` accepts; the first is the default.
BACKENDS = ("virtual",)


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


def describe(event: Any) -> tuple[str, Any]:
    """``(kind, payload)`` of a notify event: its class in short, and its state or reason."""
    kind = type(event).__name__.removeprefix("Flow").lower()
    payload = getattr(event, "state", getattr(event, "reason", event))
    return kind, payload


def format_event(seconds: float, flow_name: str, event: Any) -> str:
    kind, payload = describe(event)
    return f"{seconds:7.3f}  {flow_name:<12}  {kind:<9}  {payload!r}"


def make_backend(name: str) -> Any:
    if name == "virtual":
        from coflow.backends.virtual import VirtualBackend

        return VirtualBackend()
    raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(BACKENDS)}")


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
    name = "virtual" if virtual else (backend_name or BACKENDS[0])
    backend = make_backend(name)
    mode = "virtual clock, no real time passes" if virtual else "real time"
    print(f"coflow demo on the {name} backend ({mode})", file=out, flush=True)
    for example in load_examples() if examples is None else examples:
        title = (example.__doc__ or example.__name__).strip().splitlines()[0]
        print(f"\n== {example.__name__.rpartition('.')[2]}: {title}", file=out, flush=True)
        origin = backend.now()

        def notify(event: Any, origin: float = origin) -> None:
            print(format_event(backend.now() - origin, event.runner.name, event), file=out, flush=True)

        runners = example.start(backend, notify)
        if name == "virtual" and not virtual:
            run_paced(backend, runners, clock=clock, sleep=sleep)
        for runner in runners:
            try:
                runner.result(timeout=30)
            except (FlowFailed, FlowStopped):
                pass  # already shown as the flow's last event, or a stop
    return 0
