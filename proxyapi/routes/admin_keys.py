"""``/v1/admin/keys`` and ``/v1/admin/audit``: managing keys at run time (admin keys only).

``POST /v1/admin/keys`` answers with the new key's plaintext, once; the listing and a key's own
page never show a secret. Keys from the config file are listed as read only. Every change is
written with an audit entry (who, what, when, from where), read at ``GET /v1/admin/audit``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from proxyapi import auth
from proxyapi.errors import InvalidRequest, ResourceNotFound
from proxyapi.keys.manager import ManagedKeys
from proxyapi.keys.setup import EXTENSION
from proxyapi.validation import read_json_object

bp = Blueprint("admin_keys", __name__, url_prefix="/v1/admin")
MAX_AUDIT_PAGE = 1000


def _keys() -> ManagedKeys:
    auth.require_admin()
    keys: ManagedKeys | None = current_app.extensions.get(EXTENSION)
    if keys is None:
        raise ResourceNotFound(
            "Managed keys are off (auth.managed.enabled: false, or store: none).",
            error_code="managed_keys_off",
        )
    return keys


def _who() -> tuple[str, str]:
    return f"key:{g.key.name}", request.remote_addr or "unknown"


def _body(optional: bool = False) -> Any:
    raw = request.get_data(cache=False)
    if optional and not raw.strip():
        return {}
    return read_json_object(raw)


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    # A secret may be in it (create, rotate); nothing in between should keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/keys")
def create() -> Response:
    keys = _keys()
    view, plaintext = keys.create(_body(), *_who())
    return _answer({**view, "key": plaintext}, 201)


@bp.get("/keys")
def listing() -> Response:
    return _answer({"object": "list", "data": _keys().listing()})


@bp.get("/keys/<key_id>")
def show(key_id: str) -> Response:
    return _answer(_keys().show(key_id))


@bp.patch("/keys/<key_id>")
def update(key_id: str) -> Response:
    keys = _keys()
    return _answer(keys.update(key_id, _body(), *_who()))


@bp.post("/keys/<key_id>/rotate")
def rotate(key_id: str) -> Response:
    keys = _keys()
    view, plaintext = keys.rotate(key_id, _body(optional=True), *_who())
    return _answer({**view, "key": plaintext})


@bp.post("/keys/<key_id>/revoke")
def revoke(key_id: str) -> Response:
    keys = _keys()
    return _answer(keys.revoke(key_id, *_who()))


@bp.delete("/keys/<key_id>")
def delete(key_id: str) -> Response:
    keys = _keys()
    keys.delete(key_id, *_who())
    return _answer({"object": "key", "id": key_id, "deleted": True})


@bp.get("/audit")
def audit() -> Response:
    keys = _keys()
    raw = request.args.get("limit", "100")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_AUDIT_PAGE):
        raise InvalidRequest(
            f"limit must be 1 to {MAX_AUDIT_PAGE}, got {raw[:20]!r}.", param="limit"
        )
    before = request.args.get("before") or None
    entries = keys.audit(int(raw), before[:64] if before else None)
    return _answer({"object": "list", "data": entries})
