"""``GET /v1/models``: the models a caller may use, aggregated over every provider."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from proxyapi import auth, routing, upstream
from proxyapi.config import KeyConfig, ProviderConfig
from proxyapi.errors import ProxyAPIError

bp = Blueprint("models", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

# How long a provider's own model list is reused before it is asked again.
UPSTREAM_LIST_TTL = 300.0
# After a failed listing, wait this long before asking that provider again.
UPSTREAM_LIST_RETRY = 30.0
MEMO = "proxyapi.models.upstream_lists"


# Aliases from the config's models: section are owned by the gateway itself.
ALIAS_OWNER = "proxyapi"


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _upstream_models(provider: ProviderConfig) -> list[str]:
    """Return the provider's model list, reused for a while per process."""
    memo: dict[str, tuple[float, list[str]]] = current_app.extensions.setdefault(MEMO, {})
    lock: threading.Lock = current_app.extensions.setdefault(MEMO + ".lock", threading.Lock())
    now = time.monotonic()
    cached = memo.get(provider.name)
    if cached and cached[0] > now:
        return cached[1]
    with lock:
        cached = memo.get(provider.name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
            ids = up.list_models(provider)
            memo[provider.name] = (time.monotonic() + UPSTREAM_LIST_TTL, ids)
        except ProxyAPIError as exc:
            log.warning(
                "could not list the models of provider %s: %s", provider.name, exc.description
            )
            ids = cached[1] if cached else []
            memo[provider.name] = (time.monotonic() + UPSTREAM_LIST_RETRY, ids)
        return ids


@bp.get("/models")
def list_models() -> Response:
    """List the models this key may use: configured ones, aliases, and what providers with
    glob model lists report."""
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    listed = router.listed_models()
    data = [_model(alias, ALIAS_OWNER) for alias in router.aliases]
    data += [_model(m, p.name) for m, p in listed if m not in router.aliases]
    seen = {m for m, _ in listed} | set(router.aliases)
    for provider in router.globbing_providers():
        for model_id in _upstream_models(provider):
            if model_id not in seen and router.glob_allows(provider, model_id):
                seen.add(model_id)
                data.append(_model(model_id, provider.name))
    key: KeyConfig = g.key
    if key.models:
        data = [m for m in data if _allowed(router, key, m["id"])]
    return jsonify(object="list", data=data)


def _allowed(router: routing.Router, key: KeyConfig, model: str) -> bool:
    return auth.may_use(key, model, (t.model for t in router.resolve(model)))


@bp.get("/models/<path:model>")
def retrieve_model(model: str) -> Response:
    """Describe one model, or answer 404 model_not_found (403 if the key may not use it)."""
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    auth.check_model(g.key, model, (t.model for t in targets))
    owner = ALIAS_OWNER if model in router.aliases else targets[0].provider.name
    return jsonify(_model(model, owner))
