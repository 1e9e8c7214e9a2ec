"""``/status``: the status page (admin keys), and signing in to it from a browser.

A client that sends an admin key (``Authorization: Bearer``, or the key header) gets the page.
A browser signs in through a form that POSTs the key to ``/status/session`` (the body, never
the URL), which sets a session cookie (:mod:`.session`) and sends it back to ``/status``. A
client that asks for HTML gets errors as an HTML page; any other gets the usual JSON error.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from proxyapi import auth
from proxyapi.config import Config, KeyConfig
from proxyapi.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    ProxyAPIError,
    render_error,
)
from proxyapi.status import charts, gather, history
from proxyapi.status.history import History
from proxyapi.status.session import COOKIE, Sessions

bp = Blueprint("status", __name__, url_prefix="/status", template_folder="templates")
PUBLIC_ENDPOINTS = ("status.page", "status.sign_in", "status.sign_out")
EXTENSION = "proxyapi.status"
# The page loads nothing from anywhere (no script at all): the browser is told so too.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Longest key accepted from the form: far above any real key, well below the body limit.
MAX_FORM_KEY = 4096


def _wants_html() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _state() -> tuple[Config, Sessions, History]:
    config: Config = current_app.extensions["proxyapi.config"]
    sessions, recorded = current_app.extensions[EXTENSION]
    return config, sessions, recorded


def _viewer(sessions: Sessions) -> KeyConfig | None:
    """The admin key behind this request: its header (checked as on every route, failures
    counted), else its session cookie; None when it has neither."""
    ring: auth.KeyRing = current_app.extensions[auth.EXTENSION]
    token = auth.presented_key(ring.header)
    if token is None:
        return sessions.check(request.cookies.get(COOKIE))
    key = auth.identify(token)
    g.key, g.key_name = key, key.name
    auth.require_admin()
    return key


def _sign_in_form(status: int, message: str | None = None) -> Response:
    body = render_template("status_signin.html", message=message)
    return Response(body, status=status, mimetype="text/html")


@bp.get("")
def page() -> Response:
    """The status page, or the sign-in form for a browser that is not signed in."""
    config, sessions, recorded = _state()
    key = _viewer(sessions)
    if key is None:
        if not _wants_html():
            raise AuthenticationFailed(
                "Missing API key. Send an admin key as 'Authorization: Bearer <key>', or sign "
                "in at /status with a browser.",
                error_code="missing_api_key",
            )
        return _sign_in_form(401)
    g.key_name = key.name
    data = gather.everything(config, recorded)
    body = render_template(
        "status.html",
        data=data,
        providers=[_provider_view(row) for row in data["providers"]["rows"]],
        refresh=config.status.refresh,
        signed_in=key.name,
        by_session=auth.presented_key(current_app.extensions[auth.EXTENSION].header) is None,
        bar=charts.bar,
    )
    return Response(body, mimetype="text/html")


def _provider_view(row: dict[str, Any]) -> dict[str, Any]:
    """A provider's row with its charts drawn."""
    buckets = row["buckets"]
    calls = [b[history.CALLS] for b in buckets]
    rates = [
        100 * b[history.ERRORS] / b[history.CALLS] if b[history.CALLS] else None for b in buckets
    ]
    p95 = [history.quantile(history.latency(b), 0.95) for b in buckets]
    return {
        **row,
        "charts": [
            charts.sparkline(calls, "calls / min"),
            charts.sparkline(rates, "errors %"),
            charts.sparkline(p95, "p95 ms"),
        ],
    }


@bp.post("/session")
def sign_in() -> Response:
    """Check the key from the form (an admin key) and set the session cookie."""
    _config, sessions, _recorded = _state()
    raw = request.form.get("key", "")
    if len(raw) > MAX_FORM_KEY:
        raise InvalidRequest("The key is too long.", param="key")
    key = auth.identify(raw.strip() or None)
    g.key, g.key_name = key, key.name
    auth.require_admin()
    response = redirect("/status", code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(key),
        max_age=sessions.ttl,
        path="/status",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/session/end")
def sign_out() -> Response:
    """Forget the session cookie."""
    response = redirect("/status", code=303)
    response.delete_cookie(
        COOKIE, path="/status", secure=request.is_secure, httponly=True, samesite="Strict"
    )
    return response


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> Response:
    """An error as an HTML page for a browser (the sign-in form again for a bad key), else
    as JSON through the one error handler."""
    if not _wants_html():
        return render_error(exc)
    status = exc.code or 500
    message = str(exc.description or "")
    if isinstance(exc, PermissionDenied):
        message = "That key is not an admin key: the status page needs one."
    if status >= 500:
        message = "The gateway could not show the status page."
    response = _sign_in_form(status, message)
    headers = exc.extra_headers if isinstance(exc, ProxyAPIError) else dict(exc.get_headers())
    if "Retry-After" in headers:
        response.headers["Retry-After"] = headers["Retry-After"]
    return response


@bp.after_request
def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
