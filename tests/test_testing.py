"""``coflow.testing.step_through``: checking a flow's logic against a script, with no backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import coflow
from coflow import get_state, run, set_state, wait
from coflow.testing import Throw, step_through


class ShippingError(Exception):
    pass


def reserve_stock(order: Any) -> None: ...
def charge_payment(order: Any) -> None: ...
def ship_order(order: Any) -> None: ...
def refund_payment(order: Any) -> None: ...
def release_stock(order: Any) -> None: ...


def mark_compensated(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "status": "compensated"}


def charge_and_ship() -> Iterator[Any]:
    yield run(charge_payment)
    try:
        yield run(ship_order)
    except ShippingError:
        yield run(refund_payment)
        raise


@coflow.flow(initial_state={"status": "new"})
def order_saga() -> Iterator[Any]:
    yield run(reserve_stock)
    try:
        yield charge_and_ship()  # a sub-flow: its steps are part of the script
    except ShippingError:
        yield run(release_stock)
        state = yield set_state(mark_compensated)
        return state["status"]
    return "shipped"


def test_the_happy_path_returns_the_flows_value() -> None:
    script = [(run(reserve_stock), None), (run(charge_payment), None), (run(ship_order), None)]
    assert step_through(order_saga, script) == "shipped"


def test_a_thrown_error_takes_the_compensation_path_through_the_sub_flow() -> None:
    script = [
        (run(reserve_stock), None),
        (run(charge_payment), None),
        (run(ship_order), Throw(ShippingError("rejected"))),
        (run(refund_payment), None),
        (run(release_stock), None),
        (set_state(mark_compensated), {"status": "compensated"}),
    ]
    assert step_through(order_saga, script) == "compensated"


def test_an_unexpected_step_fails_with_the_steps_so_far() -> None:
    script = [(run(reserve_stock), None), (run(ship_order), None)]
    with pytest.raises(AssertionError) as excinfo:
        step_through(order_saga, script)
    message = str(excinfo.value)
    assert "step 2" in message
    assert "charge_payment" in message
    assert "1. run(fn=reserve_stock)" in message


def test_a_flow_that_ends_before_the_script_fails() -> None:
    def short() -> Iterator[Any]:
        yield wait(1.0)

    with pytest.raises(AssertionError, match="ended"):
        step_through(short, [(wait(1.0), None), (get_state(), 0)])


def test_a_flow_that_goes_on_after_the_script_fails() -> None:
    def long() -> Iterator[Any]:
        yield wait(1.0)
        yield wait(2.0)

    with pytest.raises(AssertionError, match="after the end of the script"):
        step_through(long, [(wait(1.0), None)])


def test_an_error_the_flow_does_not_handle_propagates() -> None:
    error = ShippingError("rejected")
    script = [
        (run(reserve_stock), None),
        (run(charge_payment), None),
        (run(ship_order), Throw(error)),
        (run(refund_payment), Throw(ValueError("refund failed"))),
    ]
    with pytest.raises(ValueError, match="refund failed"):
        step_through(order_saga, script)
