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
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from ._flow import flow_kind, instantiate
from ._lasting import Lasting
from ._values import value

__all__ = ["Throw", "lasting", "step_through"]


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


def lasting(seconds: float, fn: Callable[..., Any]) -> Lasting:
    """``fn`` as work that takes ``seconds``: its outcome reaches the flow that much later.

    Give it to ``run``, ``parallel`` or ``race``.  On the virtual clock, where
    work takes no time, signals then land during the work and ``run(timeout=)``
    fires, at exact times; on the real backends the work takes at least that
    long.  ``fn`` runs when the work starts; a cancel ends the work at once.
    """
    return Lasting(seconds, fn)
