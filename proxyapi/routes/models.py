"""``GET /v1/models``: the models a caller may use, aggregated over every provider.

The aggregated list, and each glob provider's own model list, live in the cache's ``models``
category: warmed before they expire, so no client waits for a provider's ``/models``.
``GET /v1/models/<id>`` answers from those lists and the config, caching nothing per id.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from proxyapi import auth, cache, routing, upstream
from proxyapi.config import KeyConfig, ProviderConfig
from proxyapi.errors import ModelNotFound
from proxyapi.validation import check_model_name

bp = Blueprint("models", __name__, url_prefix="/v1")

# Aliases from the config's models: section are owned by the gateway itself.
ALIAS_OWNER = "proxyapi"
CATEGORY = "models"


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _provider_models(provider: ProviderConfig) -> list[str] | None:
    """The model ids a glob provider lists (cached), or None if it has no list to give."""
    c: cache.Cache = current_app.extensions[cache.EXTENSION]
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    if not up.can_list_models(provider):
        return None
    key = f"provider:{provider.name}:{router.fingerprint}"
    ids: list[str] = c.cached(
        CATEGORY, key, lambda: up.list_models(provider), fallback=[], valid=_is_id_list
    )
    return ids


def _is_id_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, str) for m in value)


def _is_model_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict)
        and set(m) == {"id", "object", "created", "owned_by"}
        and isinstance(m["id"], str)
        and isinstance(m["owned_by"], str)
        for m in value
    )


def _all_models() -> list[dict[str, Any]]:
    """Every model the gateway routes, unfiltered (cached; see the module docstring)."""
    c: cache.Cache = current_app.extensions[cache.EXTENSION]
    router: routing.Router = current_app.extensions[routing.EXTENSION]

    def aggregate() -> list[dict[str, Any]]:
        listed = router.listed_models()
        data = [_model(alias, ALIAS_OWNER) for alias in router.aliases]
        data += [_model(m, p.name) for m, p in listed if m not in router.aliases]
        seen = {m for m, _ in listed} | set(router.aliases)
        for provider in router.globbing_providers():
            for model_id in _provider_models(provider) or []:
                if model_id not in seen and router.glob_allows(provider, model_id):
                    seen.add(model_id)
                    data.append(_model(model_id, provider.name))
        return data

    models: list[dict[str, Any]] = c.cached(
        CATEGORY, f"all:{router.fingerprint}", aggregate, fallback=[], valid=_is_model_list
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
    """Describe one model, or answer 404 model_not_found (403 if the key may not use it).

    A glob admits any name, so a name served only by globs is described only when one of
    those providers lists it (or cannot list its models): nothing is kept per name asked.
    """
    check_model_name(model)
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    auth.check_model(g.key, model, (t.model for t in targets))
    if model in router.aliases:
        return jsonify(_model(model, ALIAS_OWNER))
    for target in targets:
        if router.names(target.provider, target.model):
            return jsonify(_model(model, target.provider.name))
    for target in targets:  # served by globs only
        ids = _provider_models(target.provider)
        if ids is None or target.model in ids:
            return jsonify(_model(model, target.provider.name))
    raise ModelNotFound(
        f"The model '{model}' does not exist or is not served by this gateway; "
        "GET /v1/models lists the models you can use.",
        param="model",
    )
