"""coflow.otel: a span per flow run, one per work attempt, child flows under their parents.

Spans are read from the OpenTelemetry SDK's in-memory exporter; every test runs on all
four backends unless it is about the virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import coflow
from coflow import FlowGenerator, Ok, call, run, set_state, spawn, wait, wait_until

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from coflow.otel import FlowTracer


class Traced:
    """An SDK provider whose spans end in memory, and coflow's tracer installed on it."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = FlowTracer(tracer_provider=self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    made = Traced()
    coflow.add_instrument(made.tracer)
    try:
        yield made
    finally:
        coflow.remove_instrument(made.tracer)
        made.provider.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_flow_run_is_a_span_and_each_attempt_a_child_span_of_it(
    coflow_backend: Any, traced: Traced
) -> None:
    attempts: list[int] = []

    def push(state: Any) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("the API is down")
        return Ok("pushed")

    def sync() -> FlowGenerator:
        yield run(push, retries=3, backoff="constant", base_delay=0.01)

    assert coflow.start(sync, backend=coflow_backend).result(timeout=5) == "pushed"

    [flow] = traced.named("flow sync")
    runs = [span for span in traced.spans() if span.name.startswith("run ")]
    assert [span.attributes["coflow.run.attempt"] for span in runs] == [1, 2, 3]
    assert {parent_id(span) for span in runs} == {flow.context.span_id}
    assert [span.status.status_code for span in runs] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert runs[0].events[0].name == "exception"
    assert str(runs[0].attributes["code.function"]).endswith("push")
    retries = [event for event in flow.events if event.name == "coflow.retry"]
    assert [event.attributes["coflow.run.attempt"] for event in retries] == [1, 2]
    assert [event.attributes["coflow.retry.delay"] for event in retries] == [0.01, 0.01]
    assert flow.attributes["coflow.flow.status"] == "done"
    assert flow.status.status_code is StatusCode.UNSET


def test_a_child_flows_span_is_a_child_of_its_parents_span(
    coflow_backend: Any, traced: Traced
) -> None:
    def child() -> FlowGenerator:
        yield wait(0.01)
        yield set_state(lambda state: "child done")

    def background() -> FlowGenerator:
        yield set_state(lambda state: "spawned done")

    def parent() -> FlowGenerator:
        yield spawn(background)
        yield call(child)

    runner = coflow.start(parent, backend=coflow_backend)
    runner.result(timeout=5)
    for spawned in runner.children():
        spawned.result(timeout=5)

    [top] = traced.named("flow parent")
    [called] = traced.named("flow child")
    [spawned_span] = traced.named("flow background")
    for span in (called, spawned_span):
        assert parent_id(span) == top.context.span_id
        assert span.context.trace_id == top.context.trace_id
    assert called.attributes["coflow.flow.path"] == "parent > child"


def test_a_failed_flows_span_has_the_error(coflow_backend: Any, traced: Traced) -> None:
    def broken() -> FlowGenerator:
        yield wait(0.01)
        raise ValueError("bad input")

    with pytest.raises(coflow.FlowFailed):
        coflow.start(broken, backend=coflow_backend).result(timeout=5)

    [flow] = traced.named("flow broken")
    assert flow.status.status_code is StatusCode.ERROR
    assert flow.attributes["coflow.flow.status"] == "failed"
    [exception] = [event for event in flow.events if event.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"


def test_a_stopped_flows_span_ends_with_the_stop(coflow_backend: Any, traced: Traced) -> None:
    def idle() -> FlowGenerator:
        yield wait_until(lambda state: False)

    runner = coflow.start(idle, backend=coflow_backend)
    runner.stop()
    with pytest.raises(coflow.FlowStopped):
        runner.result(timeout=5)
    [flow] = traced.named("flow idle")
    assert flow.attributes["coflow.flow.status"] == "stopped"
    assert flow.status.status_code is StatusCode.UNSET


def test_a_restart_ends_the_runs_span_and_links_the_next_run(
    virtual_backend: Any, traced: Traced
) -> None:
    runs: list[int] = []

    def flaky() -> FlowGenerator:
        runs.append(1)
        yield wait(1.0)
        if len(runs) == 1:
            raise ConnectionError("lost the connection")

    supervisor = coflow.Supervisor(backend=virtual_backend)
    runner = supervisor.start(flaky)
    runner.result()

    first, second = traced.named("flow flaky")
    assert first.status.status_code is StatusCode.ERROR
    assert second.links[0].context.span_id == first.context.span_id
    assert second.attributes["coflow.flow.restarts"] == 1
    assert second.attributes["coflow.flow.status"] == "done"
    assert (first.attributes["coflow.time.start"], second.attributes["coflow.time.end"]) == (
        0.0,
        2.0,
    )
