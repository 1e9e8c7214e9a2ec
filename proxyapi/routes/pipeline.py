"""The one request pipeline every dialect's routes go through.

auth (before the view) -> read and validate the body (the dialect) -> resolve the model ->
check the key's allowlist -> the dialect's own state (a Responses follow-up's conversation) ->
reserve the token budget -> cache plan -> a cached answer, or the providers (fallback loop) ->
the answer or the stream, in the client's dialect (the dialect keeps what it needs of it) ->
one settle point (:class:`~proxyapi.routes.settle.Settle`: cost and usage log, tokens and
money into the budget, the request record).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, after_this_request, current_app, g, request, stream_with_context

from proxyapi import accounting, auth, budgets, cache, observe, ratelimit, routing, upstream
from proxyapi.accounting import COST_HEADER, format_usd
from proxyapi.cache.responses import BYPASS, HIT, MISS, Plan, Served
from proxyapi.config import Config, KeyConfig
from proxyapi.deadline import Deadline
from proxyapi.dialects.base import Dialect, Keeper
from proxyapi.errors import InvalidRequest, ProxyAPIError
from proxyapi.limits_storage import Rider
from proxyapi.providers.base import ClientBody, Operation, load_json_object
from proxyapi.routes.settle import Settle
from proxyapi.validation import read_json_object

log = logging.getLogger(__name__)

PROVIDER_HEADER = "X-ProxyAPI-Provider"
ATTEMPTS_HEADER = "X-ProxyAPI-Attempts"
TIMEOUT_HEADER = "X-ProxyAPI-Timeout"
CACHE_HEADER = "X-Cache"
CACHE_KEY_HEADER = "X-Cache-Key"
# Tell nginx and similar proxies not to buffer the event stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# The client's headers a provider of the same dialect gets as they are (pass-through).
DIALECT_HEADERS = ("anthropic-version", "anthropic-beta")


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


def client_body() -> ClientBody:
    """The request's JSON object, with its bytes and the dialect headers it came with."""
    raw = request.get_data(cache=False)
    headers = {k: request.headers[k] for k in DIALECT_HEADERS if request.headers.get(k)}
    return ClientBody(read_json_object(raw), raw, headers)


def _cache_headers(served: Served, key: str | None) -> dict[str, str]:
    headers = {CACHE_HEADER: served.x_cache}
    if key is not None and served.x_cache != BYPASS:
        headers[CACHE_KEY_HEADER] = key
    if served.age is not None:
        headers["Age"] = str(served.age)
    return headers


def proxy(op: Operation, dialect: Dialect) -> Response:
    """Serve ``op`` in ``dialect``; an error from the providers still reports its attempts."""
    g.dialect = dialect.name
    limits: ratelimit.Limits = current_app.extensions[ratelimit.EXTENSION]
    try:
        return _serve(op, dialect, limits.admission())
    except ProxyAPIError as exc:
        # A request refused before its reservation is still counted by its limits, and a
        # limited key gets their 429 rather than this error, as when they ran before the view.
        limits.check_deferred()
        if exc.attempts:
            record = observe.current()
            record.attempts, record.upstream_seconds = exc.attempts, exc.upstream_seconds
            exc.extra_headers.setdefault(ATTEMPTS_HEADER, str(exc.attempts))
        raise
    except BaseException:
        limits.check_deferred()
        raise


def _serve(op: Operation, dialect: Dialect, admission: Callable[[Rider], None] | None) -> Response:
    config: Config = current_app.extensions["proxyapi.config"]
    deadline = request_deadline(config)
    body = client_body()
    dialect.validate(op, body)
    key: KeyConfig = g.key
    record = observe.current()
    record.model = model = body["model"]
    record.session = dialect.session(request.headers)
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    record.model_label = router.metric_label(model)
    auth.check_model(key, model, (t.model for t in targets))
    # The tenant: the key by name and digest, so a renamed or reissued key never gets another
    # one's answers or stored responses.
    owner = f"{key.name}:{key.sha256[:16]}"
    body, targets = dialect.prepare(body, owner, targets)
    keep = dialect.keeper(body, owner)
    # Reserved before anything is sent, settled once when the response closes (Settle).
    ticket, sent = current_app.extensions[budgets.EXTENSION].reserve(
        key, op, body, targets, admission
    )
    models: dict[str, str] = {}
    for target in targets:
        models.setdefault(target.provider.name, target.model)
    settle = Settle(
        ticket,
        record,
        current_app.extensions[accounting.EXTENSION],
        key=key.name,
        route=op.value,
        prompt=ticket.prompt if ticket is not None else budgets.estimate_prompt(op, body),
        models=models,
    )
    after_this_request(settle.attach)
    headers = {**dialect.response_headers(record.request_id)}
    if ticket is not None:
        headers.update(ticket.headers())
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    responses = current_app.extensions[cache.EXTENSION].responses
    plan = (
        responses.plan(
            op,
            # As the client sent it, without what changes on every request of the same
            # question (Claude Code's billing line): the gateway's own cap must not change the
            # key either.
            dialect.cache_body(body),
            request.path,
            owner,
            # The providers by name and identity (URL, credential): another account never
            # gets another one's answers.
            [(t.provider.name, t.provider.identity, t.model) for t in targets],
            request.cache_control,
        )
        if dialect.cacheable(body)
        else Plan(None)
    )
    if body.get("stream"):
        cached = responses.lookup(plan)
        if cached is not None:
            events = dialect.replay(cached.answer.body, body)
            if events is not None:
                record.stream, record.provider, record.cache = True, cached.answer.provider, HIT
                settle.cached = cached.answer
                return Response(
                    iter([*events, settle.trailer()]),
                    mimetype="text/event-stream",
                    headers={
                        **SSE_HEADERS,
                        **headers,
                        **_cache_headers(cached, plan.key),
                        PROVIDER_HEADER: cached.answer.provider,
                        ATTEMPTS_HEADER: "0",
                    },
                )
        sent, strip_usage = dialect.stream_body(sent)
        started = up.open_stream(
            targets, op, sent, deadline, strip_usage=strip_usage, error_event=dialect.error_event
        )
        relay = settle.relay = started.relay
        relay.watch = settle.watch
        relay.trailer = settle.trailer

        def complete() -> None:
            if keep is not None:
                _keep_final(keep, started.provider, relay.source.final)
            settle.complete()

        relay.on_complete = complete
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
                **headers,
                CACHE_HEADER: record.cache,
                PROVIDER_HEADER: started.provider,
                ATTEMPTS_HEADER: str(started.attempts),
            },
        )
    served = responses.serve(plan, lambda: up.complete(targets, op, sent, deadline), deadline)
    answer = served.answer
    record.provider = answer.provider
    record.cache = served.x_cache
    if served.x_cache == HIT:  # a cached answer spends no tokens
        settle.cached = answer
    else:
        record.attempts = answer.attempts
        record.upstream_seconds = answer.upstream_seconds
        settle.answer = answer
        if keep is not None:
            _keep_final(keep, answer.provider, load_json_object(answer.body))
    cost = settle.complete()
    return Response(
        answer.body,
        mimetype="application/json",
        headers={
            **headers,
            **_cache_headers(served, plan.key),
            PROVIDER_HEADER: answer.provider,
            ATTEMPTS_HEADER: str(answer.attempts),
            **({COST_HEADER: format_usd(cost)} if record.priced else {}),
        },
    )


def _keep_final(keep: Keeper, provider: str, answer: Mapping[str, Any] | None) -> None:
    if answer is not None:
        keep(provider, answer)
