"""``GET /v1/models``: the models a caller may use, aggregated over every provider.

The aggregated list, and each glob provider's own model list, live in the cache's ``models``
category: warmed before they expire, so no client waits for a provider's ``/models``.
``GET /v1/models/<id>`` answers from those lists and the config, caching nothing per id.

A request with an ``anthropic-version`` header (the anthropic SDKs, Claude Code) gets
Anthropic's shapes: ``{"data": [{"type": "model", "id", "display_name", "created_at"}],
"has_more", "first_id", "last_id"}``, paged with ``limit`` (1 to 1000, default 20) and
``after_id`` / ``before_id``; errors in Anthropic's shape too.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from proxyapi import auth, cache, routing, upstream
from proxyapi.config import KeyConfig, ProviderConfig
from proxyapi.dialects.shapes import ANTHROPIC
from proxyapi.errors import InvalidRequest, ModelNotFound
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


def _anthropic() -> bool:
    if request.headers.get("anthropic-version"):
        g.dialect = ANTHROPIC
        return True
    return False


def _anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    # Only the id is known for every provider: it stands in for the display name too.
    return {
        "type": "model",
        "id": model["id"],
        "display_name": model["id"],
        "created_at": "1970-01-01T00:00:00Z",
    }


def _page(data: list[dict[str, Any]]) -> Response:
    """Anthropic's model list page: ``limit``, ``after_id``, ``before_id``."""
    raw = request.args.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest(f"limit: must be a whole number from 1 to 1000, got {raw!r}.")
    limit = int(raw)
    ids = [m["id"] for m in data]
    after, before = request.args.get("after_id"), request.args.get("before_id")
    if before in ids:
        end = ids.index(before)
        page = data[max(0, end - limit) : end]
        more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        page = data[start : start + limit]
        more = start + limit < len(data)
    return jsonify(
        data=[_anthropic_model(m) for m in page],
        has_more=more,
        first_id=page[0]["id"] if page else None,
        last_id=page[-1]["id"] if page else None,
    )


@bp.get("/models")
def list_models() -> Response:
    """List the models this key may use."""
    anthropic = _anthropic()
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    data = _all_models()
    key: KeyConfig = g.key
    if key.models:
        data = [m for m in data if _allowed(router, key, m["id"])]
    if anthropic:
        return _page(data)
    return jsonify(object="list", data=data)


def _allowed(router: routing.Router, key: KeyConfig, model: str) -> bool:
    return auth.may_use(key, model, (t.model for t in router.resolve(model)))


@bp.get("/models/<path:model>")
def retrieve_model(model: str) -> Response:
    """Describe one model, or answer 404 model_not_found (403 if the key may not use it).

    A glob admits any name, so a name served only by globs is described only when one of
    those providers lists it (or cannot list its models): nothing is kept per name asked.
    """
    anthropic = _anthropic()
    check_model_name(model)
    router: routing.Router = current_app.extensions[routing.EXTENSION]
    targets = router.resolve(model)
    auth.check_model(g.key, model, (t.model for t in targets))
    if model in router.aliases:
        return _describe(_model(model, ALIAS_OWNER), anthropic)
    for target in targets:
        if router.names(target.provider, target.model):
            return _describe(_model(model, target.provider.name), anthropic)
    for target in targets:  # served by globs only
        ids = _provider_models(target.provider)
        if ids is None or target.model in ids:
            return _describe(_model(model, target.provider.name), anthropic)
    raise ModelNotFound(
        f"The model '{model}' does not exist or is not served by this gateway; "
        "GET /v1/models lists the models you can use.",
        param="model",
    )


def _describe(model: dict[str, Any], anthropic: bool) -> Response:
    return jsonify(_anthropic_model(model) if anthropic else model)
