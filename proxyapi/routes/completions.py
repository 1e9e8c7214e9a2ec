"""The proxied OpenAI endpoints: chat completions, legacy completions and embeddings."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Response,
    after_this_request,
    current_app,
    g,
    request,
    stream_with_context,
)

from proxyapi import auth, budgets, cache, observe, routing, upstream
from proxyapi.cache.replay import replay_events
from proxyapi.cache.responses import BYPASS, HIT, MISS, Served
from proxyapi.config import Config, KeyConfig
from proxyapi.deadline import Deadline
from proxyapi.errors import InvalidRequest, ProxyAPIError
from proxyapi.providers.base import Operation
from proxyapi.streaming import Relay
from proxyapi.upstream import Answer
from proxyapi.validation import read_json_object, validate

bp = Blueprint("completions", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

PROVIDER_HEADER = "X-ProxyAPI-Provider"
ATTEMPTS_HEADER = "X-ProxyAPI-Attempts"
TIMEOUT_HEADER = "X-ProxyAPI-Timeout"
CACHE_HEADER = "X-Cache"
CACHE_KEY_HEADER = "X-Cache-Key"
# Tell nginx and similar proxies not to buffer the event stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def request_deadline(config: Config) -> Deadline:
    """The request's deadline: ``server.request_timeout``, or the client's X-ProxyAPI-Timeout."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return Deadline.after(config.server.request_timeout)
    limit = config.server.max_request_timeout
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= limit:
        raise InvalidRequest(
            f"{TIMEOUT_HEADER} must be a number of seconds above 0 and at most {limit:g}, "
            f"got {raw!r}."
        )
    return Deadline.after(seconds)


def _cache_headers(served: Served, key: str | None) -> dict[str, str]:
    headers = {CACHE_HEADER: served.x_cache}
    if key is not None and served.x_cache != BYPASS:
        headers[CACHE_KEY_HEADER] = key
    if served.age is not None:
        headers["Age"] = str(served.age)
    return headers


def _proxy(op: Operation) -> Response:
    """Serve ``op``; an error from the providers still reports its attempts and upstream time."""
    try:
        return _serve(op)
    except ProxyAPIError as exc:
        if exc.attempts:
            record = observe.current()
            record.attempts, record.upstream_seconds = exc.attempts, exc.upstream_seconds
            exc.extra_headers.setdefault(ATTEMPTS_HEADER, str(exc.attempts))
        raise


class _Settle:
    """The one place a request's outcome is settled: tokens into its budget reservation and
    its usage into the request record, when its response closes (a stream: when it ends)."""

    def __init__(self, ticket: budgets.Ticket | None, record: observe.RequestRecord) -> None:
        self.ticket = ticket
        self.record = record
        self.answer: Answer | None = None
        self.relay: Relay | None = None

    def attach(self, response: Response) -> Response:
        response.call_on_close(self.close)
        return response

    def close(self) -> None:
        usage = self.relay.usage if self.relay is not None else None
        if self.answer is not None:
            usage = self.answer.usage
        self.record.usage = usage
        ticket = self.ticket
        if ticket is not None:
            ticket.usage = usage
            ticket.answered = self.answer is not None or self.relay is not None
            if self.answer is not None:
                ticket.relayed = self.answer.body
            ticket.settle()


def _serve(op: Operation) -> Response:
    config: Config = current_app.extensions["proxyapi.config"]
    deadline = request_deadline(config)
    body = read_json_object()
    validate(op, body)
    key: KeyConfig = g.key
    record = observe.current()
    record.model = model = body["model"]
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    record.model_label = router.metric_label(model)
    auth.check_model(key, model, (t.model for t in targets))
    # Reserved before anything is sent, settled once when the response closes (_Settle).
    ticket, sent = current_app.extensions[budgets.EXTENSION].reserve(key, op, body)
    settle = _Settle(ticket, record)
    after_this_request(settle.attach)
    token_headers = ticket.headers() if ticket is not None else {}
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    responses = current_app.extensions[cache.EXTENSION].responses
    plan = responses.plan(
        op,
        body,  # as the client sent it: the gateway's own cap must not change the cache key
        request.path,
        # The key by name and digest, the providers by name and identity (URL, credential):
        # a renamed or reissued key, or another account, never gets another one's answers.
        f"{key.name}:{key.sha256[:16]}",
        [(t.provider.name, t.provider.identity, t.model) for t in targets],
        request.cache_control,
    )
    if body.get("stream"):
        options = body.get("stream_options") or {}
        # A replay has no logprobs to send: a request for them streams from the provider.
        cached = responses.lookup(plan) if not body.get("logprobs") else None
        if cached is not None:
            replayed = _replay(cached, bool(options.get("include_usage")), plan.key)
            if replayed is not None:
                record.stream = True
                replayed.headers.update(token_headers)
                return replayed
        # A token budget needs the stream's usage: ask for it, and keep the usage-only chunk
        # from a client that did not.
        count_tokens = ticket is not None and not options.get("include_usage")
        if count_tokens:
            sent = {**sent, "stream_options": {**options, "include_usage": True}}
        started = up.open_stream(targets, op, sent, deadline, strip_usage=count_tokens)
        relay = settle.relay = started.relay
        if ticket is not None:
            relay.watch = ticket.watch
        record.provider = started.provider
        record.cache = BYPASS if plan.key is None else MISS
        record.attempts = started.attempts
        record.upstream_seconds = started.upstream_seconds
        record.stream = True
        return Response(
            stream_with_context(relay.events()),
            mimetype="text/event-stream",
            headers={
                **SSE_HEADERS,
                **token_headers,
                CACHE_HEADER: record.cache,
                PROVIDER_HEADER: started.provider,
                ATTEMPTS_HEADER: str(started.attempts),
            },
        )
    served = responses.serve(plan, lambda: up.complete(targets, op, sent, deadline), deadline)
    answer = served.answer
    record.provider = answer.provider
    record.cache = served.x_cache
    if served.x_cache != HIT:  # a cached answer spends no tokens
        record.attempts = answer.attempts
        record.upstream_seconds = answer.upstream_seconds
        settle.answer = answer
    return Response(
        answer.body,
        mimetype="application/json",
        headers={
            **token_headers,
            **_cache_headers(served, plan.key),
            PROVIDER_HEADER: answer.provider,
            ATTEMPTS_HEADER: str(answer.attempts),
        },
    )


def _replay(cached: Served, include_usage: bool, key: str | None) -> Response | None:
    """Answer a streaming request with a cached answer, as the stream it would have been."""
    try:
        events = replay_events(cached.answer.body, include_usage=include_usage)
    except ValueError as exc:  # a shape the replay does not know: stream from the provider
        log.info("cached answer not replayed: %s", exc)
        return None
    record = observe.current()
    record.provider = cached.answer.provider
    record.cache = HIT
    return Response(
        iter(events),
        mimetype="text/event-stream",
        headers={
            **SSE_HEADERS,
            **_cache_headers(cached, key),
            PROVIDER_HEADER: cached.answer.provider,
            ATTEMPTS_HEADER: "0",
        },
    )


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """OpenAI chat completions, JSON or SSE."""
    return _proxy(Operation.CHAT)


@bp.post("/completions")
def completions() -> Response:
    """OpenAI legacy text completions, JSON or SSE."""
    return _proxy(Operation.COMPLETIONS)


@bp.post("/embeddings")
def embeddings() -> Response:
    """OpenAI embeddings."""
    return _proxy(Operation.EMBEDDINGS)
