"""The Anthropic Messages endpoints, for Claude Code and the anthropic SDKs.

``POST /v1/messages`` (also as ``/v1/messages?beta=true``: the route is matched on the path)
goes through the same pipeline as chat: to an Anthropic provider as it is, to an
OpenAI-compatible one translated. ``POST /v1/messages/count_tokens`` asks the first Anthropic
provider for the model; with none, the gateway answers with its own estimate (the one token
budgets reserve with), and says so in ``X-ProxyAPI-Token-Count: estimated``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify

from proxyapi import auth, observe, routing, upstream
from proxyapi.budgets import estimate_prompt
from proxyapi.dialects.messages import MESSAGES_DIALECT
from proxyapi.providers.base import Operation
from proxyapi.routes.pipeline import (
    ATTEMPTS_HEADER,
    PROVIDER_HEADER,
    client_body,
    proxy,
    request_deadline,
)

bp = Blueprint("messages", __name__, url_prefix="/v1")
COUNT_HEADER = "X-ProxyAPI-Token-Count"


@bp.post("/messages")
def messages() -> Response:
    """Anthropic Messages, JSON or SSE."""
    return proxy(Operation.MESSAGES, MESSAGES_DIALECT)


@bp.post("/messages/count_tokens")
def count_tokens() -> Response:
    """Count a Messages request's input tokens (the provider's count, or an estimate)."""
    g.dialect = MESSAGES_DIALECT.name
    body = client_body()
    MESSAGES_DIALECT.validate(Operation.COUNT_TOKENS, body)
    record = observe.current()
    record.model = model = body["model"]
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    record.model_label = router.metric_label(model)
    auth.check_model(g.key, model, (t.model for t in targets))
    headers = MESSAGES_DIALECT.response_headers(record.request_id)
    anthropic = [t for t in targets if t.provider.type == "anthropic"]
    if not anthropic:
        response = jsonify(input_tokens=estimate_prompt(Operation.MESSAGES, body))
        response.headers.update({**headers, COUNT_HEADER: "estimated"})
        return response
    config = current_app.extensions["proxyapi.config"]
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    answer = up.complete(anthropic, Operation.COUNT_TOKENS, body, request_deadline(config))
    record.provider, record.attempts = answer.provider, answer.attempts
    record.upstream_seconds = answer.upstream_seconds
    return Response(
        answer.body,
        mimetype="application/json",
        headers={
            **headers,
            COUNT_HEADER: "provider",
            PROVIDER_HEADER: answer.provider,
            ATTEMPTS_HEADER: str(answer.attempts),
        },
    )
