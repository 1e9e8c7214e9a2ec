"""Client-visible errors, and the one handler that renders every error as JSON in the client's
dialect (OpenAI's, or Anthropic's on the Messages routes: :mod:`proxyapi.dialects.shapes`).

    werkzeug.exceptions.HTTPException
     └── ProxyAPIError                 OpenAI ``type``/``param``/``code`` on top of ``code``
          ├── InvalidRequest           400 invalid_request_error
          ├── AuthenticationFailed     401 authentication_error
          ├── PermissionDenied         403 permission_error
          ├── ModelNotFound            404 not_found_error, code model_not_found
          ├── ResourceNotFound         404 invalid_request_error (a stored response, as OpenAI)
          ├── Conflict                 409 invalid_request_error (a managed key's name is taken)
          ├── UpstreamRejected         the provider's own 4xx, relayed with its status
          ├── UpstreamError            502 upstream_error (unreachable, 5xx, refused our key)
          │    ├── UpstreamStreamFailed  the provider reported an error inside its stream
          │    └── UpstreamMalformed   502 the provider answered something that is not an answer
          ├── ServiceUnavailable       503 every candidate's circuit is open (Retry-After)
          └── UpstreamTimeout          504 timeout
               └── DeadlineExceeded    504 the request's end-to-end deadline passed

Werkzeug's own exceptions (an unknown route, 405, 413, and the 500 that Flask raises for an
unhandled exception) go through the same handler, typed by their status. The body never holds a
traceback or an upstream secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from proxyapi.dialects.shapes import (
    ANTHROPIC,
    OPENAI_TYPES,
    dialect_of_path,
    error_for,
    openai_error,
)
from proxyapi.jsonio import encode_json

# OpenAI's error ``type`` for each status the gateway can send.
TYPE_BY_STATUS = OPENAI_TYPES


class ProxyAPIError(HTTPException):
    """Base of every error the gateway raises on purpose."""

    code = 500
    type = "server_error"
    error_code: str | None = None
    description = "The gateway could not complete the request."
    # Headers every error of the class carries.
    default_headers: dict[str, str] = {}
    # Set on errors from the fallback loop: calls made and seconds spent upstream.
    attempts = 0
    upstream_seconds = 0.0

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.description)
        self.param = param
        if error_code is not None:
            self.error_code = error_code
        self.extra_headers = {**self.default_headers, **(headers or {})}

    def payload(self) -> dict[str, Any]:
        """Return the OpenAI error object for this error."""
        return error_body(str(self.description), self.type, self.param, self.error_code)


class InvalidRequest(ProxyAPIError):
    code = 400
    type = "invalid_request_error"
    description = "The request is invalid."


class AuthenticationFailed(ProxyAPIError):
    code = 401
    type = "authentication_error"
    error_code = "invalid_api_key"
    description = "Invalid API key."


class PermissionDenied(ProxyAPIError):
    code = 403
    type = "permission_error"
    description = "This key may not use this resource."


class ModelNotFound(ProxyAPIError):
    code = 404
    type = "not_found_error"
    error_code = "model_not_found"
    description = "The model does not exist or is not served by this gateway."


class ResourceNotFound(ProxyAPIError):
    code = 404
    type = "invalid_request_error"
    description = "No such resource."


class Conflict(ProxyAPIError):
    code = 409
    type = "invalid_request_error"
    description = "The request conflicts with the current state."


class UpstreamError(ProxyAPIError):
    code = 502
    type = "upstream_error"
    error_code = "upstream_error"
    description = "The upstream provider failed."


class UpstreamStreamFailed(UpstreamError):
    """A provider reported an error inside its stream (typed as the provider typed it)."""

    def __init__(
        self, message: str, *, type: str | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message, error_code=error_code)
        if type is not None:
            self.type = type


class UpstreamMalformed(UpstreamError):
    error_code = "upstream_malformed_response"
    description = "The upstream provider sent a malformed response."


class ServiceUnavailable(ProxyAPIError):
    code = 503
    type = "service_unavailable"
    error_code = "circuit_open"
    description = "No provider can take the request right now."


class UpstreamTimeout(ProxyAPIError):
    code = 504
    type = "timeout"
    error_code = "upstream_timeout"
    description = "The upstream provider did not answer in time."


class DeadlineExceeded(UpstreamTimeout):
    error_code = "deadline_exceeded"
    description = "The request did not complete within its deadline."
    # The request's own budget is spent: a retry by the client's SDK (the openai and anthropic
    # SDKs retry a 504 unless told not to) would only spend it again.
    default_headers = {"x-should-retry": "false"}


class UpstreamRejected(ProxyAPIError):
    """A 4xx the provider sent because of the client's request, relayed with its status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, error_code=error_code, headers=headers)
        self.code = status
        self.type = type or TYPE_BY_STATUS.get(status, "invalid_request_error")


error_body = openai_error


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in ``text`` (pass :func:`secret_forms` of them)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets and the escaped forms they take in messages, longest first.

    A secret quoted by an exception's ``repr`` (requests' ``InvalidHeader`` does) or inside JSON
    appears with its special characters escaped, where a plain search would miss it.
    """
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update((secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]))
    return tuple(sorted(forms, key=len, reverse=True))


def render_error(exc: HTTPException) -> Response:
    """Render any HTTPException as JSON in the request's dialect."""
    status = exc.code or 500
    if isinstance(exc, ProxyAPIError):
        message, kind = str(exc.description), exc.type
        param, code = exc.param, exc.error_code
        headers = dict(exc.extra_headers)
    else:
        message, kind, param, code = str(exc.description or ""), None, None, None
        if isinstance(exc, InternalServerError):
            message = "The gateway hit an internal error."
            code = "internal_error"
        elif isinstance(exc, RequestEntityTooLarge):
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request body is larger than the gateway's limit of {limit} bytes."
            code = "request_too_large"
        # Keep what Werkzeug put there on purpose (Allow on 405, Retry-After on 429), not HTML.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    request_id = g.get("request_id")
    if status >= 500 and request_id:
        message += f" (request id {request_id})"
    secrets = current_app.extensions.get("proxyapi.secrets", ())
    dialect = g.get("dialect") or dialect_of_path(request.path)
    body = error_for(dialect, status, redact(message, secrets), kind, param, code, request_id)
    if dialect == ANTHROPIC and request_id:
        # The anthropic SDKs read an error's request id from this header, as on answers.
        headers.setdefault("request-id", request_id)
    return Response(
        encode_json(body),
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def init_app(app: Flask) -> None:
    """Render every HTTPException (Flask's 500 for unhandled errors included) as JSON."""
    app.register_error_handler(HTTPException, render_error)
