"""OpenTelemetry spans of flows, through coflow's instrumentation hooks (``coflow[otel]``).

``FlowTracer`` is an :class:`coflow.Instrument`: install it process-wide with
``coflow.add_instrument(FlowTracer())`` or on one supervisor.  It needs only
``opentelemetry-api``; the application configures the SDK and its exporters.

- one span per flow run, ``flow <name>``; a child flow's (``call``, ``spawn``)
  is a child of its parent's, and a root flow's is a child of the span active
  where ``coflow.start`` was called (a web request's, say).  A supervisor's
  restart ends the run's span as failed and opens the next run's, linked to it;
- one span per attempt of ``run`` work (and per callable of ``parallel`` and
  ``race``), ``run <function>``, a child of its flow's, with the attempt
  number; a retry is an event on the flow's span, with its delay and error.

Names and attributes follow OpenTelemetry's conventions where they apply
(``code.function``, ``code.namespace``, exceptions recorded as ``exception``
events, status ``ERROR`` on failure); the rest are namespaced ``coflow.*``.
Spans carry wall-clock timestamps, as every exporter expects; on the virtual
clock the backend's time is in ``coflow.time`` attributes as well.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import Instrument
from ._step import describe

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["FlowTracer"]

#: The instrumentation scope's name.
SCOPE = "coflow"


class FlowTracer(Instrument):
    """Spans of flow runs and of their work attempts (see the module docstring).

    ``tracer_provider``: the provider to take the tracer from; by default the
    global one (``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self._lock = threading.Lock()  # hooks of runners on different backends run in parallel
        self._runs: weakref.WeakKeyDictionary[Runner, Span] = weakref.WeakKeyDictionary()
        #: Open attempt spans by (runner id, step id, attempt), oldest first.
        self._attempts: dict[tuple[int, int, int], deque[Span]] = {}

    # -- flow runs ---------------------------------------------------------------

    def runner_started(self, runner: Runner, now: float) -> None:
        parent = runner.parent
        with self._lock:
            parent_span = None if parent is None else self._runs.get(parent)
        context = None if parent_span is None else trace.set_span_in_context(parent_span)
        self._open_run(runner, now, context)

    def restarted(self, runner: Runner, reason: BaseException | None, now: float) -> None:
        with self._lock:
            ended = self._runs.pop(runner, None)
        if ended is None:
            return
        if reason is not None:
            _fail(ended, reason)
        ended.end()
        parent = runner.parent
        with self._lock:
            parent_span = None if parent is None else self._runs.get(parent)
        context = None if parent_span is None else trace.set_span_in_context(parent_span)
        links = [Link(ended.get_span_context(), {"coflow.link": "previous run"})]
        self._open_run(runner, now, context, links)

    def runner_ended(self, runner: Runner, now: float) -> None:
        with self._lock:
            span = self._runs.pop(runner, None)
        if span is None:
            return
        span.set_attribute("coflow.flow.status", runner.status)
        span.set_attribute("coflow.time.end", now)
        if runner.status == "failed" and runner.error is not None:
            _fail(span, runner.error)
        span.end()

    def _open_run(
        self, runner: Runner, now: float, context: Any, links: list[Link] | None = None
    ) -> None:
        attributes: dict[str, AttributeValue] = {
            "coflow.flow.name": runner.name,
            "coflow.flow.path": " > ".join(runner.lineage()),
            "coflow.runner.id": runner.id,
            "coflow.backend": runner.backend.name,
            "coflow.flow.restarts": runner.restarts,
            "coflow.time.start": now,
        }
        span = self._tracer.start_span(
            f"flow {runner.name}",
            context=context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
        )
        with self._lock:
            self._runs[runner] = span

    # -- work attempts -------------------------------------------------------------

    def work_started(self, runner: Runner, step: Any, attempt: int, now: float) -> None:
        with self._lock:
            run_span = self._runs.get(runner)
        context = None if run_span is None else trace.set_span_in_context(run_span)
        fn = getattr(step, "fn", None)
        name = describe(fn) if fn is not None else type(step).__name__.lower()
        attributes: dict[str, AttributeValue] = {
            "coflow.flow.name": runner.name,
            "coflow.run.attempt": attempt,
            "coflow.time.start": now,
        }
        retries = getattr(step, "retries", None)
        if isinstance(retries, int):
            attributes["coflow.run.retries"] = retries
        if fn is not None:
            attributes["code.function"] = getattr(fn, "__qualname__", name)
            module = getattr(fn, "__module__", None)
            if module:
                attributes["code.namespace"] = module
        span = self._tracer.start_span(
            f"run {name}", context=context, kind=SpanKind.INTERNAL, attributes=attributes
        )
        with self._lock:
            self._attempts.setdefault((runner.id, id(step), attempt), deque()).append(span)

    def work_ended(
        self, runner: Runner, step: Any, attempt: int, error: BaseException | None, now: float
    ) -> None:
        key = (runner.id, id(step), attempt)
        with self._lock:
            open_spans = self._attempts.get(key)
            if not open_spans:
                return
            span = open_spans.popleft()
            if not open_spans:
                del self._attempts[key]
        span.set_attribute("coflow.time.end", now)
        if error is not None:
            _fail(span, error)
        span.end()

    def retry(
        self,
        runner: Runner,
        step: Any,
        attempt: int,
        delay: float,
        error: BaseException | None,
        now: float,
    ) -> None:
        with self._lock:
            span = self._runs.get(runner)
        if span is None:
            return
        attributes: dict[str, AttributeValue] = {
            "coflow.run.attempt": attempt,
            "coflow.retry.delay": delay,
        }
        if error is not None:
            attributes["exception.type"] = type(error).__qualname__
            attributes["exception.message"] = str(error)
        span.add_event("coflow.retry", attributes)


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
