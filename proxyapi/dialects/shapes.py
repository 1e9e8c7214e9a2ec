"""How an error looks in each ingress dialect: pure functions, used by the app's error
handler, by the stream error events and by the worker's own refusals.

- OpenAI (Chat Completions, Completions, Embeddings): ``{"error": {"message", "type",
  "param", "code"}}``.
- Anthropic (Messages): ``{"type": "error", "error": {"type", "message"}, "request_id"}``,
  with Anthropic's error types (``invalid_request_error``, ``authentication_error``,
  ``permission_error``, ``not_found_error``, ``request_too_large``, ``rate_limit_error``,
  ``api_error``, ``timeout_error``, ``overloaded_error``) chosen by status.
"""

from __future__ import annotations

from typing import Any

OPENAI, ANTHROPIC = "openai", "anthropic"
# The paths clients of the Anthropic dialect call; every other path speaks OpenAI's.
ANTHROPIC_PATHS = ("/v1/messages",)

# OpenAI's error ``type`` for each status the gateway can send.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout",
    409: "invalid_request_error",
    413: "invalid_request_error",
    414: "invalid_request_error",
    415: "invalid_request_error",
    417: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "server_error",
    501: "invalid_request_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout",
}
# Anthropic's error ``type`` for each status (its API uses 529 for overloaded).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPE_NAMES = frozenset(ANTHROPIC_TYPES.values())


def dialect_of_path(path: str) -> str:
    """The dialect a request to ``path`` speaks (before its route has said so itself)."""
    return ANTHROPIC if path.startswith(ANTHROPIC_PATHS) else OPENAI


def openai_error(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Build the OpenAI-shaped error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def anthropic_error(
    status: int, message: str, code: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """Build the Anthropic-shaped error object; a ``code`` that is an Anthropic error type
    (an Anthropic provider's own, relayed) is kept as the type."""
    kind = code if code in _ANTHROPIC_TYPE_NAMES else None
    if kind is None:
        kind = ANTHROPIC_TYPES.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error"
        )
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def error_for(
    dialect: str,
    status: int,
    message: str,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An error body in ``dialect``."""
    if dialect == ANTHROPIC:
        return anthropic_error(status, message, code, request_id)
    return openai_error(message, type or OPENAI_TYPES.get(status, "server_error"), param, code)
