"""``GET /v1/models``: the models a caller may use, aggregated over every provider.

The aggregated list, and each glob provider's own model list, live in the cache's ``models``
category: warmed before they expire, so no client waits for a provider's ``/models``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from proxyapi import auth, cache, routing, upstream
from proxyapi.config import KeyConfig, ProviderConfig

bp = Blueprint("models", __name__, url_prefix="/v1")

# Aliases from the config's models: section are owned by the gateway itself.
ALIAS_OWNER = "proxyapi"
CATEGORY = "models"


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _all_models() -> list[dict[str, Any]]:
    """Every model the gateway routes, unfiltered (cached; see the module docstring)."""
    c: cache.Cache = current_app.extensions[cache.EXTENSION]
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]

    def provider_models(provider: ProviderConfig) -> list[str]:
        key = f"provider:{provider.name}:{router.fingerprint}"
        ids: list[str] = c.cached(CATEGORY, key, lambda: up.list_models(provider), fallback=[])
        return ids

    def aggregate() -> list[dict[str, Any]]:
        listed = router.listed_models()
        data = [_model(alias, ALIAS_OWNER) for alias in router.aliases]
        data += [_model(m, p.name) for m, p in listed if m not in router.aliases]
        seen = {m for m, _ in listed} | set(router.aliases)
        for provider in router.globbing_providers():
            for model_id in provider_models(provider):
                if model_id not in seen and router.glob_allows(provider, model_id):
                    seen.add(model_id)
                    data.append(_model(model_id, provider.name))
        return data

    models: list[dict[str, Any]] = c.cached(
        CATEGORY, f"all:{router.fingerprint}", aggregate, fallback=[]
    )
    return models


@bp.get("/models")
def list_models() -> Response:
    """List the models this key may use."""
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    data = _all_models()
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
    c: cache.Cache = current_app.extensions[cache.EXTENSION]

    def describe() -> dict[str, Any]:
        owner = ALIAS_OWNER if model in router.aliases else targets[0].provider.name
        return _model(model, owner)

    described: dict[str, Any] = c.cached(
        "metadata", f"model:{router.fingerprint}:{model}", describe
    )
    return jsonify(described)
