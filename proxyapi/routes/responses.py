"""The OpenAI Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

``POST`` goes through the same pipeline as chat (:mod:`proxyapi.routes.pipeline`): to a provider
that serves the Responses API as it is, to any other translated to its chat call. A stored
response (:mod:`proxyapi.response_store`) is read and deleted by the key that made it: one
the gateway made from its store, one a provider keeps from that provider.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify

from proxyapi import observe, response_store, upstream
from proxyapi.dialects.responses import RESPONSES_DIALECT
from proxyapi.errors import ResourceNotFound
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import Operation
from proxyapi.routes.pipeline import ATTEMPTS_HEADER, PROVIDER_HEADER, proxy, request_deadline
from proxyapi.routing import Target
from proxyapi.validation import check_identifier

bp = Blueprint("responses", __name__, url_prefix="/v1")


@bp.post("/responses")
def create() -> Response:
    """Create a response, JSON or SSE."""
    return proxy(Operation.RESPONSES, RESPONSES_DIALECT)


@bp.get("/responses/<response_id>")
def retrieve(response_id: str) -> Response:
    """A stored response."""
    return _stored(response_id, Operation.RESPONSE_GET)


@bp.delete("/responses/<response_id>")
def delete(response_id: str) -> Response:
    """Delete a stored response."""
    return _stored(response_id, Operation.RESPONSE_DELETE)


def _stored(response_id: str, op: Operation) -> Response:
    g.dialect = RESPONSES_DIALECT.name
    check_identifier(response_id, "response_id")
    key = g.key
    owner = f"{key.name}:{key.sha256[:16]}"
    store: response_store.ResponseStore = current_app.extensions[response_store.EXTENSION]
    stored = store.lookup(owner, response_id)
    if stored is None:
        raise ResourceNotFound(f"Response with id '{response_id}' not found.")
    if stored.provider is None:
        assert stored.response is not None
        if op is Operation.RESPONSE_DELETE:
            store.delete(owner, response_id)
            return jsonify(id=response_id, object="response", deleted=True)
        return Response(encode_json(stored.response), mimetype="application/json")
    # The provider keeps it: ask that one.
    config = current_app.extensions["proxyapi.config"]
    provider = next((p for p in config.providers if p.name == stored.provider), None)
    if provider is None:  # the provider left the config since
        raise ResourceNotFound(f"Response with id '{response_id}' not found.")
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    answer = up.complete([Target(provider, "")], op, {"id": response_id}, request_deadline(config))
    record = observe.current()
    record.provider, record.attempts = answer.provider, answer.attempts
    record.upstream_seconds = answer.upstream_seconds
    if op is Operation.RESPONSE_DELETE:
        store.delete(owner, response_id)
    return Response(
        answer.body,
        mimetype="application/json",
        headers={PROVIDER_HEADER: answer.provider, ATTEMPTS_HEADER: str(answer.attempts)},
    )
