"""The spans of a traced gateway, after the OpenTelemetry HTTP and GenAI conventions.

A SERVER span per request (``POST /v1/chat/completions``), its parent taken from the client's
``traceparent``/``tracestate``, ended when the response closes (for a stream, when it is
over) with what the request record knows then: key name, model, provider, attempts, cache
result, usage, cost. Under it a CLIENT span per upstream attempt (``chat gpt-4o``): every retry
and every fallback its own, its context sent to the provider as ``traceparent``. Prompts and
answers go in only with ``tracing.capture_content`` (span events, clipped).

The SDK is set up from the standard ``OTEL_*`` variables (endpoint, headers, sampler, batch
delays, resource), once per process and lazily, so a provider and its export thread are never
carried across a fork.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from flask import Response, g, request
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from proxyapi.cache.responses import BYPASS, HIT, MISS, REFRESH
from proxyapi.config import Config
from proxyapi.errors import ProxyAPIError
from proxyapi.observe import RequestRecord
from proxyapi.providers.base import UpstreamRequest
from proxyapi.providers.usage import Usage
from proxyapi.streaming import Relay
from proxyapi.upstream.outcomes import ProviderFailure, Verdict
from proxyapi.upstream.retry import current_call

if TYPE_CHECKING:
    from proxyapi.routing import Target
    from proxyapi.upstream.calls import Attempt

__all__ = ["Tracing"]

T = TypeVar("T")
Attributes = dict[str, AttributeValue]

# Health checks and scrapes would drown the traces that matter.
UNTRACED_ENDPOINTS = frozenset({"health.health", "health.ready", "health.root", "metrics"})
# gen_ai.operation.name by route (GenAI semantic conventions).
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "chat",
    "/v1/responses": "chat",
}
# gen_ai.provider.name by provider type; other types go by their own name.
GENAI_PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic"}
# proxyapi.cache.result by X-Cache: a refresh was fetched, as a miss is.
CACHE_RESULTS = {HIT: "hit", MISS: "miss", REFRESH: "miss", BYPASS: "bypass"}
DEFAULT_SERVICE_NAME = "proxyapi"


# Spans per export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise (the SDK's default is
# 512). The export thread encodes a batch holding the GIL: 512 spans stall every request thread
# of the worker for ~20 ms (p99 at concurrency 1: 25 ms against 6 ms with 64, bench/tracing.py).
BATCH_SIZE_VAR = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
EXPORT_BATCH_SIZE = 64


def otlp_processor() -> SpanProcessor:
    """Batch spans to OTLP/HTTP; endpoint, headers, timeout and delays from ``OTEL_*``."""
    batch = None if os.environ.get(BATCH_SIZE_VAR) else EXPORT_BATCH_SIZE
    return BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=batch)


def service_resource() -> Resource:
    """The resource from ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``, named proxyapi
    when neither names the service."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


@dataclass
class RequestTrace:
    """One request's span and what its attempts learnt for it."""

    span: Span
    context: Context
    operation: str | None
    fallbacks: int = 0
    response_model: str | None = None
    prompt: bytes | None = None
    completion: bytes | None = None
    relay: Relay | None = None


class Tracing:
    """The tracer of one app: request hooks, and the wrapper of each upstream attempt."""

    def __init__(self, cfg: Config) -> None:
        self.capture = cfg.tracing.capture_content
        self.max_bytes = cfg.tracing.content_max_bytes
        self.systems = {p.name: GENAI_PROVIDERS.get(p.type, p.type) for p in cfg.providers}
        # Where spans go; tests swap in an in-memory exporter before the first request.
        self.make_processor: Callable[[], SpanProcessor] = otlp_processor
        self._lock = threading.Lock()
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        self._pid = 0

    def tracer(self) -> trace.Tracer:
        """This process's tracer, made on first use after a fork (its export thread too)."""
        tracer = self._tracer
        if tracer is None or self._pid != os.getpid():
            with self._lock:
                if self._tracer is None or self._pid != os.getpid():
                    provider = TracerProvider(resource=service_resource())
                    provider.add_span_processor(self.make_processor())
                    self._provider, self._pid = provider, os.getpid()
                    self._tracer = provider.get_tracer("proxyapi")
                tracer = self._tracer
        return tracer

    def shutdown(self) -> None:
        """Export what is left and stop the export thread (a worker is exiting)."""
        provider = self._provider
        if provider is not None and self._pid == os.getpid():
            provider.shutdown()

    # ----------------------------------------------------------------- the request span

    def start_request(self) -> None:
        """Open the request's SERVER span, a child of the client's trace if it sent one."""
        if request.endpoint in UNTRACED_ENDPOINTS:
            return
        rule = request.url_rule.rule if request.url_rule is not None else None
        operation = OPERATIONS.get(rule or "")
        attributes: Attributes = {
            "http.request.method": request.method,
            "url.path": request.path,
            "url.scheme": request.scheme,
        }
        if rule is not None:
            attributes["http.route"] = rule
        if operation is not None:
            attributes["gen_ai.operation.name"] = operation
        span = self.tracer().start_span(
            f"{request.method} {rule}" if rule else request.method,
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        g.trace = RequestTrace(span, trace.set_span_in_context(span), operation)

    def finish_request(self, response: Response) -> Response:
        """End the span when the response closes: a stream's once it is over."""
        traced: RequestTrace | None = g.pop("trace", None)
        if traced is not None:
            record: RequestRecord | None = g.get("record")
            status = response.status_code
            response.call_on_close(lambda: self._end(traced, record, status))
        return response

    def _end(self, traced: RequestTrace, record: RequestRecord | None, status: int) -> None:
        span = traced.span
        attributes: Attributes = {"http.response.status_code": status}
        if record is not None:
            attributes.update(self._outcome(traced, record))
        if status >= 500:
            attributes["error.type"] = str(status)
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attributes)
        if self.capture:
            self._content(traced)
        span.end()

    def _outcome(self, traced: RequestTrace, record: RequestRecord) -> Attributes:
        """What the request record says once the request is over."""
        out: Attributes = {
            "proxyapi.request.id": record.request_id,
            "proxyapi.attempts": record.attempts,
            "proxyapi.fallbacks": traced.fallbacks,
            "proxyapi.stream": record.stream,
        }
        if record.key != "-":
            out["proxyapi.key.name"] = record.key
        if record.model != "-":
            out["gen_ai.request.model"] = record.model
        if record.provider != "-":
            out.update(self._provider_attributes(record.provider))
        cache = CACHE_RESULTS.get(record.cache)
        if cache is not None:
            out["proxyapi.cache.result"] = cache
        model = traced.response_model
        if record.usage is not None:
            out.update(_usage_attributes(record.usage))
            model = model or record.usage.model
        if model:
            out["gen_ai.response.model"] = model
        if record.priced and record.cost_usd is not None:
            out["proxyapi.cost.usd"] = record.cost_usd
        return out

    def _provider_attributes(self, name: str) -> Attributes:
        system = self.systems.get(name, name)
        # gen_ai.system: the name before the conventions renamed it, still read by many tools.
        return {
            "proxyapi.provider.name": name,
            "gen_ai.provider.name": system,
            "gen_ai.system": system,
        }

    def _content(self, traced: RequestTrace) -> None:
        completion = traced.completion
        if completion is None and traced.relay is not None:
            final = traced.relay.source.final
            if final is not None:
                completion = json.dumps(final, ensure_ascii=False).encode()
        for event, attribute, data in (
            ("gen_ai.content.prompt", "gen_ai.prompt", traced.prompt),
            ("gen_ai.content.completion", "gen_ai.completion", completion),
        ):
            if data:
                clipped = data[: self.max_bytes]
                traced.span.add_event(
                    event,
                    {
                        attribute: clipped.decode("utf-8", "ignore"),
                        "proxyapi.content.truncated": len(data) > len(clipped),
                    },
                )

    # ----------------------------------------------------------------- attempt spans

    def traced(self, attempt: Attempt[T]) -> Attempt[T]:
        """Wrap one request's attempts (:class:`~proxyapi.upstream.calls.AttemptTracer`)."""
        traced: RequestTrace | None = g.get("trace")
        if traced is None:
            return attempt

        def traced_attempt(
            target: Target, call: UpstreamRequest
        ) -> tuple[Verdict, T | None, ProxyAPIError | None]:
            state = current_call()
            spans = _AttemptSpans(self, traced, target, call, state.attempts if state else 1)
            if self.capture and traced.prompt is None:
                traced.prompt = call.body
            if state is not None:
                state.on_retry = spans.retried
            try:
                verdict, result, error = attempt(target, spans.inject(call))
            except ProviderFailure as failure:
                traced.fallbacks += 1
                spans.end("failure", failure.error)
                raise
            except BaseException as exc:
                spans.end("error", exc)
                raise
            finally:
                if state is not None:
                    state.on_retry = None
            if verdict is Verdict.OK:
                spans.answered(result)
            elif verdict is Verdict.RELAY:
                spans.end("client_error", error)
            else:
                traced.fallbacks += 1
                spans.end("declined", error)
            return verdict, result, error

        return traced_attempt


class _AttemptSpans:
    """The CLIENT span of one call to a provider, and one more for each retry urllib3 makes."""

    def __init__(
        self,
        tracing: Tracing,
        traced: RequestTrace,
        target: Target,
        call: UpstreamRequest,
        number: int,
    ) -> None:
        self.tracing = tracing
        self.traced = traced
        self.name = f"{traced.operation or 'call'} {target.model}"
        url = urlsplit(call.url)
        self.attributes: Attributes = {
            **tracing._provider_attributes(target.provider.name),
            "gen_ai.request.model": target.model,
        }
        if traced.operation is not None:
            self.attributes["gen_ai.operation.name"] = traced.operation
        if url.hostname:
            self.attributes["server.address"] = url.hostname
        if url.port:
            self.attributes["server.port"] = url.port
        self.span = self._start(number)

    def _start(self, number: int, start_time: int | None = None) -> Span:
        return self.tracing.tracer().start_span(
            self.name,
            context=self.traced.context,
            kind=SpanKind.CLIENT,
            attributes={**self.attributes, "proxyapi.attempt": number},
            start_time=start_time,
        )

    def inject(self, call: UpstreamRequest) -> UpstreamRequest:
        """The call with this attempt's ``traceparent`` (urllib3 resends the same headers on a
        retry, so a retried call names the first attempt as its parent)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(self.span))
        return replace(call, headers={**call.headers, **carrier})

    def retried(self, status: int | None, error: Exception | None, wait: float) -> None:
        """End this attempt (urllib3 retries it) and start the next, after its wait."""
        attributes: Attributes = {"proxyapi.upstream.outcome": "retried"}
        if status is not None:
            attributes["http.response.status_code"] = status
            attributes["error.type"] = str(status)
        elif error is not None:
            attributes["error.type"] = type(error).__qualname__
        self.span.set_attributes(attributes)
        self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()
        state = current_call()
        number = state.attempts if state is not None else 0
        self.span = self._start(number, time.time_ns() + int(wait * 1e9))

    def answered(self, result: Any) -> None:
        """End the attempt that answered, with the model and tokens it reported."""
        usage: Usage | None = None
        if isinstance(result, Relay):
            self.traced.relay = result  # its usage is known when the stream is over
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bytes):
            body, usage = result
            if self.tracing.capture:
                self.traced.completion = body
        attributes: Attributes = {"proxyapi.upstream.outcome": "ok"}
        if isinstance(usage, Usage):
            attributes.update(_usage_attributes(usage))
            if usage.model:
                attributes["gen_ai.response.model"] = usage.model
                self.traced.response_model = usage.model
        self.span.set_attributes(attributes)
        self.span.end()

    def end(self, outcome: str, error: BaseException | None) -> None:
        """End an attempt that did not answer."""
        attributes: Attributes = {"proxyapi.upstream.outcome": outcome}
        if isinstance(error, ProxyAPIError):
            attributes["error.type"] = type(error).__qualname__
            attributes["proxyapi.error.status"] = error.code or 0
        elif error is not None:
            attributes["error.type"] = type(error).__qualname__
        self.span.set_attributes(attributes)
        self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


def _usage_attributes(usage: Usage) -> Attributes:
    out: Attributes = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cache_read_tokens:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    return out
