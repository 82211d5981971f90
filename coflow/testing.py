"""Test a flow's logic step by step, with no backend: ``step_through`` and ``Throw``.

Steps are comparable values, so a flow can be checked against a script of
the steps it should yield and what each should give back, the way
python-effect's ``perform_sequence`` and redux-saga's tests work::

    from coflow.testing import Throw, step_through

    step_through(order_saga, [
        (run(reserve_stock), None),
        (run(charge_payment), None),
        (run(ship_order), Throw(ShippingError("rejected"))),
        (run(refund_payment), None),
        (run(release_stock), None),
        (set_state(mark_compensated), {"status": "compensated"}),
    ])

Sub-flows (generators, generator functions and ``Flow`` objects yielded by
the flow) are entered as the scheduler would enter them, so the script lists
the steps of the whole tree in the order they run.

A whole async application is tested in virtual time on ``virtual_loop()``, an
asyncio event loop on which ``asyncio.sleep(3600)`` returns at once with
``loop.time()`` 3600 s on, or with ``run_virtual(main())``, ``asyncio.run`` on
such a loop (docs/virtual-time-testing.md, "A whole async app in virtual
time").  asyncio is imported only when they are called.

``explore(scenario)`` runs a test scenario under many drawn schedules (how
long each piece of work lasts) and reports the first that fails, with the
seed that replays it (docs/virtual-time-testing.md, "Exploring schedules").

``Timeline`` records ``(seconds, label)`` pairs on a backend's clock and
``After`` calls a function some seconds from now on it, so a test reads as a
timeline on any backend; the pytest plugin (``coflow.pytest_plugin``, loaded
by pytest wherever coflow is installed) gives them as the ``timeline`` and
``after`` fixtures (docs/testing.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._backend import Backend
from ._explore import ScheduleFailed, explore
from ._flow import flow_kind, instantiate
from ._lasting import Lasting
from ._runner import Runner, start
from ._steps import wait
from ._values import value

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ScheduleFailed",
    "Throw",
    "explore",
    "step_through",
    "Timeline",
    "After",
    "lasting",
    "virtual_loop",
    "run_virtual",
]

_T = TypeVar("_T")


@value
class Throw:
    """In a script: raise ``error`` at the ``yield`` of the step, as a failing step would."""

    error: BaseException


def step_through(flow: Any, script: Sequence[tuple[Any, Any]]) -> Any:
    """Drive ``flow`` against ``script``, a list of ``(expected step, its result)`` pairs.

    Returns the flow's return value.  Raises ``AssertionError``, showing the
    script up to that point, when the flow yields another step than the
    script expects, yields more steps, or ends early.  An error the flow
    raises propagates.
    """
    frames: list[Generator[Any, Any, Any]] = [instantiate(flow, "step_through")]
    seen: list[str] = []
    value_in: Any = None
    error_in: BaseException | None = None
    position = 0
    while True:
        gen = frames[-1]
        try:
            if error_in is None:
                step = gen.send(value_in)
            else:
                thrown, error_in = error_in, None
                step = gen.throw(thrown)
        except StopIteration as stop:
            frames.pop()
            if not frames:
                if position < len(script):
                    _mismatch(
                        seen, f"the flow ended, but the script expects {script[position][0]!r}"
                    )
                return stop.value
            value_in = stop.value
            continue
        except BaseException as error:
            frames.pop()
            if not frames:
                raise
            error_in = error
            continue
        if flow_kind(step) in ("function", "generator", "flow"):  # a step is matched
            frames.append(instantiate(step, "step_through"))
            value_in = None
            continue
        if position == len(script):
            _mismatch(seen, f"the flow yielded {step!r} after the end of the script")
        expected, result = script[position]
        if step != expected:
            _mismatch(
                seen, f"step {position + 1}: expected {expected!r}, the flow yielded {step!r}"
            )
        seen.append(f"{position + 1}. {step!r} -> {result!r}")
        position += 1
        if isinstance(result, Throw):
            value_in, error_in = None, result.error
        else:
            value_in = result


def _mismatch(seen: list[str], problem: str) -> None:
    log = "\n".join(seen) or "(no step matched)"
    raise AssertionError(f"{problem}\nsteps so far:\n{log}")


def virtual_loop(start: float = 0.0, *, real_timeout: float = 10.0) -> asyncio.AbstractEventLoop:
    """A new asyncio event loop on which virtual time passes instantly; its clock reads ``start``.

    A loop factory: ``asyncio.Runner(loop_factory=virtual_loop)``,
    ``asyncio.run(main(), loop_factory=virtual_loop)`` (Python 3.12+), anyio's
    ``("asyncio", {"loop_factory": virtual_loop})``, or pytest-asyncio's
    ``pytest_asyncio_loop_factories`` hook.  When the loop has nothing to do,
    its clock jumps to the next timer; executor work holds the clock until the
    loop has its result, waiting at most ``real_timeout`` real seconds with
    nothing happening; a loop that can never wake raises ``coflow.Deadlock``
    naming its pending tasks.  The loop is a
    ``coflow.backends.virtual_loop.VirtualEventLoop``.
    """
    loop: asyncio.AbstractEventLoop = _virtual_loop_module().VirtualEventLoop(
        start, real_timeout=real_timeout
    )
    return loop


def run_virtual(
    main: Coroutine[Any, Any, _T], *, start: float = 0.0, real_timeout: float = 10.0
) -> _T:
    """Run ``main`` on a new :func:`virtual_loop` and return its result, as ``asyncio.run`` does.

    Then, as ``asyncio.run`` does, the tasks left are cancelled, async
    generators and the default executor shut down, and the loop closed.
    """
    loop = virtual_loop(start, real_timeout=real_timeout)
    result: _T = _virtual_loop_module().run(main, loop)
    return result


def _virtual_loop_module() -> Any:
    # Found by name, as the backends are: the adapter imports asyncio, this module does not.
    return importlib.import_module("coflow.backends.virtual_loop")


def lasting(seconds: float, fn: Callable[..., Any]) -> Lasting:
    """``fn`` as work that takes ``seconds``: its outcome reaches the flow that much later.

    Give it to ``run``, ``parallel`` or ``race``.  On the virtual clock, where
    work takes no time, signals then land during the work and ``run(timeout=)``
    fires, at exact times; on the real backends the work takes at least that
    long.  ``fn`` runs when the work starts; a cancel ends the work at once.
    """
    return Lasting(seconds, fn)


#: How far apart two times on the virtual clock may be and still match: float rounding only
#: (``0.2 + 0.4`` is ``0.6000000000000001``).
EXACT = 1e-9


class Timeline:
    """A log of ``(seconds since it was made, label)`` pairs, taken on ``backend``'s clock.

    Flows and callbacks call ``log(label)`` as things happen; the test then
    asserts the whole list with ``assert_matches``.  ``tolerance`` is how many
    seconds an observed time may be off: 0 (exact, up to float rounding) on
    the virtual clock; on a real backend, what its timers and threads may add.
    ``log`` may be called from any thread.
    """

    def __init__(self, backend: Backend, tolerance: float = 0.0) -> None:
        self.backend = backend
        self.tolerance = tolerance
        self.origin = backend.now()
        self.entries: list[tuple[float, Any]] = []

    def __repr__(self) -> str:
        return f"<Timeline {self.entries!r}>"

    def log(self, label: Any) -> None:
        """Record ``label`` at the backend's time now."""
        self.entries.append((self.backend.now() - self.origin, label))

    def labels(self) -> list[Any]:
        """The labels recorded, in order, without their times."""
        return [label for _, label in self.entries]

    def assert_matches(self, expected: Sequence[tuple[float, Any]]) -> None:
        """Assert the entries are ``expected``: the same labels in order, each at its time.

        A time matches when it is within ``tolerance`` seconds of the one
        expected.  The ``AssertionError`` shows both timelines.
        """
        allowed = max(self.tolerance, EXACT)
        wanted = [(float(seconds), label) for seconds, label in expected]
        if self.labels() == [label for _, label in wanted] and all(
            abs(seen - when) <= allowed for (seen, _), (when, _) in zip(self.entries, wanted)
        ):
            return
        raise AssertionError(
            f"the timeline differs (times within {allowed:g} s match):\n"
            f"  expected: {_entries(wanted)}\n"
            f"  recorded: {_entries(self.entries)}"
        )


def _entries(entries: Sequence[tuple[float, Any]]) -> str:
    return "[" + ", ".join(f"({seconds:.6g}, {label!r})" for seconds, label in entries) + "]"


class After:
    """``after(seconds, fn)`` calls ``fn()`` that many seconds from now, on ``backend``'s clock.

    Each call starts a tiny flow, named ``after(<seconds>)`` and supervised by
    no supervisor, that waits and then calls ``fn``: it works the same on
    every backend, so a test can signal, send or stop at a precise moment of
    its timeline.  It returns that flow's runner; stop it to call off ``fn``.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<After on {self.backend!r}>"

    def __call__(self, seconds: float, fn: Callable[[], Any]) -> Runner:
        step = wait(seconds)  # a bad delay is refused here, at the caller's line

        def driver() -> Iterator[Any]:
            yield step
            fn()

        return start(driver, backend=self.backend, name=f"after({seconds:g})", supervisor=None)
