"""Synchronous steps: a flow doing ``yield set_state(fn)`` N times on the virtual backend.

Peers:

- a minimal hand-written interpreter: a generator yielding small step objects,
  a loop calling ``gen.send`` and a dict dispatch on the step's type that applies
  ``fn`` to a state.  This is the floor for "a generator that yields steps";
  SPEC §8 allows coflow 1.5x its time.
- an ``await asyncio.sleep(0)`` loop inside ``asyncio.run``: the cheapest way
  to take a turn on an asyncio loop; coflow must be at least 5x faster.

Every side builds one step object per iteration, as user code does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from time import perf_counter
from typing import Any

import coflow
from coflow import set_state
from coflow.backends.virtual import VirtualBackend

from . import Row, at_most, best_of


def increment(count: int) -> int:
    return count + 1


def run_coflow(steps: int) -> float:
    """Seconds for ``start`` plus ``result()`` of a flow doing ``steps`` set_state steps."""
    @coflow.flow(initial_state=0, name="sync_steps")
    def counter() -> Generator[Any, Any, None]:
        for _ in range(steps):
            yield set_state(increment)

    # The run-away guard counts steps taken at one instant; this flow never blocks on purpose.
    backend = VirtualBackend(max_steps=2 * steps + 100)
    started = perf_counter()
    runner = coflow.start(counter, backend=backend)
    final = runner.result()
    elapsed = perf_counter() - started
    if final != steps:
        raise RuntimeError(f"sync_steps: coflow ended with state {final!r}, expected {steps}")
    return elapsed


class SetState:
    """The hand-written loop's step: as small as a step object can be."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn


def _apply_set_state(step: SetState, state: Any) -> tuple[Any, Any]:
    new_state = step.fn(state)
    return new_state, new_state


_HANDLERS: dict[type, Callable[[Any, Any], tuple[Any, Any]]] = {SetState: _apply_set_state}


def run_hand_loop(steps: int) -> float:
    """Seconds for the minimal generator interpreter to run the same flow."""

    def counter() -> Generator[Any, Any, None]:
        for _ in range(steps):
            yield SetState(increment)

    started = perf_counter()
    handlers = _HANDLERS
    generator = counter()
    send = generator.send
    state: Any = 0
    value: Any = None
    try:
        while True:
            step = send(value)
            state, value = handlers[type(step)](step, state)
    except StopIteration:
        pass
    elapsed = perf_counter() - started
    if state != steps:
        raise RuntimeError(f"sync_steps: hand loop ended with state {state!r}, expected {steps}")
    return elapsed


def run_asyncio(steps: int) -> float:
    """Seconds for ``asyncio.run`` of a coroutine doing ``steps`` ``await asyncio.sleep(0)``."""

    async def counter() -> int:
        count = 0
        for _ in range(steps):
            await asyncio.sleep(0)
            count = increment(count)
        return count

    started = perf_counter()
    final = asyncio.run(counter())
    elapsed = perf_counter() - started
    if final != steps:
        raise RuntimeError(f"sync_steps: asyncio ended with {final!r}, expected {steps}")
    return elapsed


def measure(steps: int, repeats: int) -> list[Row]:
    best = best_of(repeats, {
        "coflow": lambda: run_coflow(steps),
        "hand": lambda: run_hand_loop(steps),
        "asyncio": lambda: run_asyncio(steps),
    })
    per_step = {name: seconds / steps * 1e9 for name, seconds in best.items()}
    line = f"sync steps: set_state x {steps:,}"
    return [
        Row(line, "ns/step", per_step["coflow"], "hand-written send loop", per_step["hand"],
            at_most(1.5, "<= 1.5x")),
        Row(line, "ns/step", per_step["coflow"], "asyncio.sleep(0) loop", per_step["asyncio"],
            at_most(1 / 5, "<= 0.2x (5x faster)")),
    ]


def profile_target(steps: int) -> Callable[[], float]:
    return lambda: run_coflow(steps)
