"""receive(match, timeout): take the oldest matching message from the runner's mailbox."""

from __future__ import annotations

from typing import Any

import pytest

import coflow
from coflow import FlowFailed, FlowGenerator, FlowNotRunning, FlowTimeout, parallel, receive, wait
from coflow.testing import After


def is_text(message: Any) -> bool:
    return isinstance(message, str)


def test_receive_takes_the_oldest_message_first(coflow_backend: Any) -> None:
    received: list[Any] = []

    def body() -> FlowGenerator:
        yield wait(0.1)  # both messages are in the mailbox by now
        received.append((yield receive()))
        received.append((yield receive()))

    runner = coflow.start(body, backend=coflow_backend)
    runner.send("first")
    runner.send("second")

    runner.result(timeout=5)
    assert received == ["first", "second"]


def test_receive_blocks_until_a_message_is_sent(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        message = yield receive()
        timeline.log(("got", message))

    runner = coflow.start(body, backend=coflow_backend)
    after(0.2, lambda: runner.send("hello"))

    runner.result(timeout=5)
    timeline.assert_matches([(0.2, ("got", "hello"))])


def test_each_message_is_taken_at_most_once(coflow_backend: Any, timeline: Any) -> None:
    taken: list[tuple[str, Any]] = []

    def receiver(name: str) -> FlowGenerator:
        message = yield receive()
        taken.append((name, message))

    def body() -> FlowGenerator:
        yield parallel([receiver("a"), receiver("b")])
        try:
            leftover = yield receive(timeout=0.1)
        except FlowTimeout:
            timeline.log("mailbox empty")
        else:
            timeline.log(("leftover", leftover))

    runner = coflow.start(body, backend=coflow_backend)
    runner.send("x")
    runner.send("y")

    runner.result(timeout=5)
    assert sorted(message for _, message in taken) == ["x", "y"]
    assert sorted(name for name, _ in taken) == ["a", "b"]
    timeline.assert_matches([(0.1, "mailbox empty")])


def test_match_leaves_non_matching_messages_for_later(coflow_backend: Any) -> None:
    received: list[Any] = []

    def body() -> FlowGenerator:
        yield wait(0.1)
        received.append((yield receive(match=is_text)))
        received.append((yield receive()))
        received.append((yield receive()))

    runner = coflow.start(body, backend=coflow_backend)
    for message in (1, "two", 3):
        runner.send(message)

    runner.result(timeout=5)
    assert received == ["two", 1, 3]


def test_a_blocked_receive_ignores_messages_that_do_not_match(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        message = yield receive(match=is_text)
        timeline.log(("got", message))
        rest = yield receive()
        timeline.log(("then", rest))

    runner = coflow.start(body, backend=coflow_backend)
    after(0.1, lambda: runner.send(42))
    after(0.2, lambda: runner.send("text"))

    runner.result(timeout=5)
    timeline.assert_matches([(0.2, ("got", "text")), (0.2, ("then", 42))])


def test_receive_timeout_raises_flow_timeout_at_the_yield(
    coflow_backend: Any, timeline: Any
) -> None:
    def body() -> FlowGenerator:
        try:
            yield receive(timeout=0.2)
        except FlowTimeout:
            timeline.log("timed out")

    runner = coflow.start(body, backend=coflow_backend)

    runner.result(timeout=5)
    assert runner.status == "done"
    timeline.assert_matches([(0.2, "timed out")])


def test_an_uncaught_receive_timeout_fails_the_flow(coflow_backend: Any) -> None:
    def body() -> FlowGenerator:
        yield receive(match=is_text, timeout=0.1)

    runner = coflow.start(body, backend=coflow_backend)
    runner.send(1)  # not a match: does not satisfy the receive

    with pytest.raises(FlowFailed) as failed:
        runner.result(timeout=5)
    assert isinstance(failed.value.__cause__, FlowTimeout)


def test_a_message_arriving_before_the_timeout_is_received(
    coflow_backend: Any, timeline: Any, after: After
) -> None:
    def body() -> FlowGenerator:
        message = yield receive(timeout=0.3)
        timeline.log(("got", message))

    runner = coflow.start(body, backend=coflow_backend)
    after(0.1, lambda: runner.send("in time"))

    runner.result(timeout=5)
    timeline.assert_matches([(0.1, ("got", "in time"))])


def test_send_on_an_ended_runner_raises_flow_not_running(coflow_backend: Any) -> None:
    def body() -> FlowGenerator:
        yield wait(0.05)

    runner = coflow.start(body, backend=coflow_backend)
    runner.result(timeout=5)

    with pytest.raises(FlowNotRunning):
        runner.send("too late")


def test_send_on_a_stopped_runner_raises_flow_not_running(coflow_backend: Any) -> None:
    def body() -> FlowGenerator:
        yield receive()

    runner = coflow.start(body, backend=coflow_backend)
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)

    with pytest.raises(FlowNotRunning):
        runner.send("too late")
