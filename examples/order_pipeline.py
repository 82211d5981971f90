"""An order pipeline with child flows: the payment is called, the e-mail is spawned.

Durable's order pipeline, in coflow.  The parent flow validates the order,
then charges it through a child flow that it waits for,
``call(payment_flow(...), initial_state=..., timeout=0.2, ref="payment")``,
then starts the confirmation e-mail as a child flow that it does not wait
for, ``spawn(email_flow(...), ..., ref="confirmation_email")``, and
completes.  Each child is a runner of its own, with its own state (given by
``initial_state``: a child does not inherit its parent's state) and its own
events.  The payment authorizes the amount, then polls the gateway every
0.05 s until the charge settles; if it is stopped first, it voids the
authorization.

Four orders run side by side:

=====  ==================================================================
order  what happens
=====  ==================================================================
1      the charge settles at 0.05 s: the order is paid, its e-mail is
       spawned and the order completes at 0.05 s; the e-mail, whose
       first delivery attempt fails, is delivered at 0.1 s, after its
       parent has completed (a spawned child outlives a parent that
       completes normally)
2      the card is declined: the payment child fails, and the order gets
       ``ChildFailed`` at its ``call`` and ends ``"payment_failed"``
3      the charge never settles: at 0.2 s the call times out, the
       payment child is stopped and voids its authorization, and the
       order gets ``FlowTimeout`` and ends ``"payment_timed_out"``
4      the charge never settles, and the customer cancels the order at
       0.1 s: stopping the order first stops its running payment child,
       which voids its authorization, and only then does the order's own
       cleanup run; both end stopped and send no more events
=====  ==================================================================

Orders 2 and 3 handle the child's failure and end normally, with the reason
in their state; no e-mail is sent for them.  ``runner.children()`` lists
each order's children, oldest first, with their status.  The refs name the
two children within their order, so that running the order's body again
(after a supervisor's restart) finds them instead of charging twice; see
docs/supervision.md.  A child's events come from its own
runner, named after its flow (``payment_flow``, ``email_flow``).

Run it with ``python -m examples.order_pipeline`` or ``python -m coflow demo``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import Any

import coflow
from coflow import Ok, Retry, call, run, set_state, spawn, wait
from examples._recording import Notify, Record, print_records, record_events

OrderState = dict[str, Any]

#: How long an order waits for its payment before giving up on it.
PAYMENT_TIMEOUT = 0.2
#: How often the payment asks the gateway whether the charge has settled.
POLL_EVERY = 0.05

ORDERS: list[OrderState] = [
    {"order_id": "order-1", "total": 99.99, "email": "ada@example.com", "status": "new"},
    {"order_id": "order-2", "total": 45.0, "email": "bob@example.com", "status": "new"},
    {"order_id": "order-3", "total": 12.5, "email": "cy@example.com", "status": "new"},
    {"order_id": "order-4", "total": 30.0, "email": "dee@example.com", "status": "new"},
]


class CardDeclined(Exception):
    pass


class FakeServices:
    """Fake order book, payment gateway and mailer, sharing one journal of calls.

    The gateway declines the cards of ``declined`` orders, and never settles
    the charges of ``unsettled`` ones; any other charge settles on its second
    poll.  The mail server is busy for the first attempt at each message.
    """

    def __init__(
        self,
        declined: frozenset[str] = frozenset({"order-2"}),
        unsettled: frozenset[str] = frozenset({"order-3", "order-4"}),
    ) -> None:
        self.declined = declined
        self.unsettled = unsettled
        self.journal: list[tuple[str, str]] = []  # (order_id, action), in call order
        self.polls: dict[str, int] = {}

    # The order book

    def validate(self, order_id: str, total: float, email: str) -> None:
        self.journal.append((order_id, "validate"))
        if total <= 0 or "@" not in email:
            raise ValueError(f"order {order_id} is invalid")

    def cancel(self, order_id: str) -> None:
        self.journal.append((order_id, "cancel"))

    # The payment gateway

    def authorize(self, order_id: str, amount: float) -> str:
        self.journal.append((order_id, "authorize"))
        if order_id in self.declined:
            raise CardDeclined(f"card declined for {order_id}")
        return f"auth-{order_id}"

    def capture(self, order_id: str, authorization: str) -> str | None:
        """The payment id once the charge has settled, else None (still pending)."""
        self.journal.append((order_id, "capture"))
        self.polls[order_id] = self.polls.get(order_id, 0) + 1
        if order_id in self.unsettled or self.polls[order_id] < 2:
            return None
        return f"pay-{order_id}"

    def void(self, order_id: str, authorization: str) -> None:
        self.journal.append((order_id, "void"))

    # The mailer

    def deliver(self, order_id: str, to: str, template: str) -> None:
        attempts = sum(1 for entry in self.journal if entry == (order_id, "deliver"))
        self.journal.append((order_id, "deliver"))
        if attempts == 0:
            raise ConnectionError("mail server busy")


# The payment child: its own state is {"order_id", "amount", ...}.


def authorize(services: FakeServices, payment: OrderState) -> Ok[OrderState]:
    authorization = services.authorize(payment["order_id"], payment["amount"])
    return Ok({**payment, "authorization": authorization, "status": "authorized"})


def capture(services: FakeServices, payment: OrderState) -> Ok[OrderState] | Retry[OrderState]:
    payment_id = services.capture(payment["order_id"], payment["authorization"])
    if payment_id is None:
        return Retry()  # still pending: poll again after POLL_EVERY
    return Ok({**payment, "payment_id": payment_id, "status": "captured"})


def void(services: FakeServices, payment: OrderState) -> Ok[OrderState]:
    services.void(payment["order_id"], payment["authorization"])
    return Ok({**payment, "status": "voided"})


def payment_flow(services: FakeServices) -> Iterator[Any]:
    """Authorize the amount, then poll until the charge settles; void it if stopped first."""
    yield run(partial(authorize, services))  # a declined card fails the child
    try:
        yield run(partial(capture, services), retries=100, base_delay=POLL_EVERY)
    except coflow.Cancelled:  # the call timed out, or the order was cancelled
        yield run(partial(void, services))
        raise


# The e-mail child: its own state is {"order_id", "to", "template", ...}.


def deliver(services: FakeServices, message: OrderState) -> Ok[OrderState]:
    services.deliver(message["order_id"], message["to"], message["template"])
    return Ok({**message, "delivered": True})


def email_flow(services: FakeServices) -> Iterator[Any]:
    """Deliver one message; a busy mail server is tried again 0.05 s later."""
    yield run(partial(deliver, services), retries=3, base_delay=0.05)


# The parent.


def validate(services: FakeServices, order: OrderState) -> Ok[OrderState]:
    services.validate(order["order_id"], order["total"], order["email"])
    return Ok({**order, "status": "validated"})


def cancel(services: FakeServices, order: OrderState) -> None:
    services.cancel(order["order_id"])


def order_pipeline(
    services: FakeServices, notify: Notify | None = None
) -> Generator[Any, Any, None]:
    """Validate, charge through a called child, send the e-mail through a spawned one."""
    order = yield run(partial(validate, services))
    try:
        payment = yield call(
            payment_flow(services),
            initial_state={"order_id": order["order_id"], "amount": order["total"]},
            timeout=PAYMENT_TIMEOUT,
            ref="payment",
            notify=notify,
        )
    except coflow.ChildFailed as failed:  # the payment flow failed
        reason = f"payment failed: {failed.reason}"
        yield set_state(lambda o: {**o, "status": "payment_failed", "reason": reason})
        return
    except coflow.FlowTimeout:  # the payment flow was stopped after PAYMENT_TIMEOUT
        yield set_state(lambda o: {**o, "status": "payment_timed_out"})
        return
    except coflow.Cancelled:  # the order was stopped: its payment child has ended already
        yield run(partial(cancel, services))
        raise
    yield set_state(lambda o: {**o, "status": "paid", "payment_id": payment["payment_id"]})
    yield spawn(  # gives the child's Runner at once; the order does not wait for it
        email_flow(services),
        initial_state={
            "order_id": order["order_id"],
            "to": order["email"],
            "template": "order_confirmed",
        },
        ref="confirmation_email",
        notify=notify,
    )
    yield set_state(lambda o: {**o, "status": "completed"})


def customer(order: coflow.Runner, cancel_after: float) -> Iterator[Any]:
    """Drive the example: cancel an order after a while."""
    yield wait(cancel_after)
    order.stop()


def start(
    backend: Any,
    notify: Notify,
    services: FakeServices | None = None,
    orders: list[OrderState] | None = None,
    cancelled_order: str | None = "order-4",
    cancel_after: float = 0.1,
) -> list[coflow.Runner]:
    """Start one pipeline per order, and the customer who cancels one; return the runners."""
    services = FakeServices() if services is None else services
    runners = [
        coflow.start(
            order_pipeline(services, notify),
            initial_state=order,
            notify=notify,
            backend=backend,
            name=order["order_id"],
        )
        for order in (ORDERS if orders is None else orders)
    ]
    drivers = [
        coflow.start(customer(runner, cancel_after), backend=backend, name="customer")
        for runner in runners
        if runner.name == cancelled_order
    ]
    return runners + drivers


def main(
    backend: Any = None,
    notify: Callable[[Record], None] | None = None,
    services: FakeServices | None = None,
    orders: list[OrderState] | None = None,
    cancelled_order: str | None = "order-4",
) -> list[Record]:
    """Run the example to its end; return the notify events as ``(seconds, flow name, event)``.

    The events of the orders' children are included: they end after their parent, at times.
    """
    starter = partial(start, services=services, orders=orders, cancelled_order=cancelled_order)
    return record_events(starter, backend, notify)


if __name__ == "__main__":
    print_records(main())
