"""An order saga: reserve stock, charge the payment, ship; undo on failure.

Each step is a ``run``.  When shipping fails for good (it is retried twice,
0.1 s then 0.2 s later), the ``except`` blocks undo what was done, innermost
first: the payment is refunded, then the stock is released.  Compensations
are ordinary steps yielded from ``except``; the order then ends normally
with ``status == "compensated"`` and the reason.

Two orders run side by side: ``order-1`` ships, ``order-2`` has an address
the carrier rejects and is compensated at 0.3 s.

Run it with ``python -m examples.order_saga`` or ``python -m coflow demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import coflow
from coflow import Ok, run, set_state
from examples._recording import Notify, Record, print_records, record_events

OrderState = dict[str, Any]

ORDERS: list[OrderState] = [
    {
        "order_id": "order-1",
        "sku": "dune-hc",
        "quantity": 1,
        "amount": 24.0,
        "address": "1 Arrakis Way",
        "status": "new",
    },
    {
        "order_id": "order-2",
        "sku": "solaris-pb",
        "quantity": 2,
        "amount": 31.0,
        "address": "nowhere",
        "status": "new",
    },
]


class ShippingError(Exception):
    pass


class FakeShop:
    """Fake inventory, payment and shipping services sharing one journal of calls."""

    def __init__(self, undeliverable: frozenset[str] = frozenset({"nowhere"})) -> None:
        self.undeliverable = undeliverable
        self.journal: list[tuple[str, str]] = []  # (order_id, action), in call order

    def reserve(self, order_id: str, sku: str, quantity: int) -> str:
        self.journal.append((order_id, "reserve"))
        return f"rsv-{order_id}"

    def release(self, order_id: str, reservation: str) -> None:
        self.journal.append((order_id, "release"))

    def charge(self, order_id: str, amount: float) -> str:
        self.journal.append((order_id, "charge"))
        return f"pay-{order_id}"

    def refund(self, order_id: str, payment: str) -> None:
        self.journal.append((order_id, "refund"))

    def ship(self, order_id: str, address: str) -> str:
        self.journal.append((order_id, "ship"))
        if address in self.undeliverable:
            raise ShippingError(f"carrier rejected address {address!r}")
        return f"trk-{order_id}"


# The saga's actions: each takes the order state and returns the next one.


def reserve_stock(shop: FakeShop, order: OrderState) -> Ok[OrderState]:
    reservation = shop.reserve(order["order_id"], order["sku"], order["quantity"])
    return Ok({**order, "status": "reserved", "reservation": reservation})


def charge_payment(shop: FakeShop, order: OrderState) -> Ok[OrderState]:
    payment = shop.charge(order["order_id"], order["amount"])
    return Ok({**order, "status": "charged", "payment": payment})


def ship_order(shop: FakeShop, order: OrderState) -> Ok[OrderState]:
    tracking = shop.ship(order["order_id"], order["address"])
    return Ok({**order, "status": "shipped", "tracking": tracking})


def refund_payment(shop: FakeShop, order: OrderState) -> Ok[OrderState]:
    shop.refund(order["order_id"], order["payment"])
    return Ok({**order, "status": "refunded"})


def release_stock(shop: FakeShop, order: OrderState) -> Ok[OrderState]:
    shop.release(order["order_id"], order["reservation"])
    return Ok({**order, "status": "released"})


def order_saga(shop: FakeShop) -> Iterator[Any]:
    """Reserve, charge, ship; on failure undo the steps already done, last first."""
    yield run(partial(reserve_stock, shop))
    try:
        yield run(partial(charge_payment, shop))
        try:
            yield run(partial(ship_order, shop), retries=2, backoff="linear", base_delay=0.1)
        except Exception:
            yield run(partial(refund_payment, shop))
            raise
    except Exception as error:
        reason = str(error)
        yield run(partial(release_stock, shop))
        yield set_state(lambda order: {**order, "status": "compensated", "reason": reason})


def start(
    backend: Any,
    notify: Notify,
    shop: FakeShop | None = None,
    orders: list[OrderState] | None = None,
) -> list[coflow.Runner]:
    """Start one saga per order on ``backend``; return the runners to wait for."""
    shop = FakeShop() if shop is None else shop
    return [
        coflow.start(
            order_saga(shop),
            initial_state=order,
            notify=notify,
            backend=backend,
            name=order["order_id"],
        )
        for order in (ORDERS if orders is None else orders)
    ]


def main(
    backend: Any = None,
    notify: Callable[[Record], None] | None = None,
    shop: FakeShop | None = None,
    orders: list[OrderState] | None = None,
) -> list[Record]:
    """Run the example to its end; return the notify events as ``(seconds, flow name, event)``."""
    return record_events(partial(start, shop=shop, orders=orders), backend, notify)


if __name__ == "__main__":
    print_records(main())
