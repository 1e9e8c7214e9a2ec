"""The proxied OpenAI endpoints: chat completions, legacy completions and embeddings."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, stream_with_context

from proxyapi import routing, upstream
from proxyapi.config import Config
from proxyapi.providers.base import Operation
from proxyapi.streaming import relay
from proxyapi.validation import read_json_object, validate

bp = Blueprint("completions", __name__, url_prefix="/v1")

PROVIDER_HEADER = "X-ProxyAPI-Provider"
# Tell nginx and similar proxies not to buffer the event stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _proxy(op: Operation) -> Response:
    body = read_json_object()
    validate(op, body)
    g.model = body["model"]
    targets = current_app.extensions[routing.EXTENSION].resolve(body["model"])
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    if body.get("stream"):
        opened = up.open_stream(targets, op, body)
        g.provider = opened.provider
        config: Config = current_app.extensions["proxyapi.config"]
        return Response(
            stream_with_context(relay(opened, config.server.heartbeat_interval)),
            mimetype="text/event-stream",
            headers={**SSE_HEADERS, PROVIDER_HEADER: opened.provider},
        )
    answer = up.complete(targets, op, body)
    g.provider = answer.provider
    return Response(
        answer.body, mimetype="application/json", headers={PROVIDER_HEADER: answer.provider}
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
