"""The proxied OpenAI endpoints: chat completions, legacy completions and embeddings."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from proxyapi import routing, upstream
from proxyapi.config import Config
from proxyapi.deadline import Deadline
from proxyapi.errors import InvalidRequest
from proxyapi.providers.base import Operation
from proxyapi.validation import read_json_object, validate

bp = Blueprint("completions", __name__, url_prefix="/v1")

PROVIDER_HEADER = "X-ProxyAPI-Provider"
ATTEMPTS_HEADER = "X-ProxyAPI-Attempts"
TIMEOUT_HEADER = "X-ProxyAPI-Timeout"
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


def _proxy(op: Operation) -> Response:
    config: Config = current_app.extensions["proxyapi.config"]
    deadline = request_deadline(config)
    body = read_json_object()
    validate(op, body)
    g.model = body["model"]
    targets = current_app.extensions[routing.EXTENSION].resolve(body["model"])
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    if body.get("stream"):
        started = up.open_stream(targets, op, body, deadline)
        g.provider = started.provider
        return Response(
            stream_with_context(started.relay.events()),
            mimetype="text/event-stream",
            headers={
                **SSE_HEADERS,
                PROVIDER_HEADER: started.provider,
                ATTEMPTS_HEADER: str(started.attempts),
            },
        )
    answer = up.complete(targets, op, body, deadline)
    g.provider = answer.provider
    return Response(
        answer.body,
        mimetype="application/json",
        headers={PROVIDER_HEADER: answer.provider, ATTEMPTS_HEADER: str(answer.attempts)},
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
