"""What an error event inside an OpenAI chat stream says, for every translator that reads one.

Providers put an error in a stream as ``{"error": {...}}`` data (OpenAI, most hosts), as an
``event: error`` (some hosts, and the Anthropic adapter's chat stream), or as data that is not
JSON at all; each becomes one :class:`UpstreamStreamFailed` typed as the provider typed it.
"""

from __future__ import annotations

from typing import Any

from proxyapi.errors import UpstreamStreamFailed

STREAM_ERROR_TYPE = "upstream_error"
# How much of an error that is not JSON is quoted back to the client.
_ERROR_SNIPPET = 300


def chat_stream_failure(data: Any, raw: bytes) -> UpstreamStreamFailed:
    """The failure an error event reports: ``data`` its parsed JSON (None if it is not JSON),
    ``raw`` its bytes."""
    err = data.get("error", data) if isinstance(data, dict) else None
    if not isinstance(err, dict):
        err = {"message": err if isinstance(err, str) else None}
    message, kind, code = err.get("message"), err.get("type"), err.get("code")
    if not isinstance(message, str) or not message:
        snippet = raw[:_ERROR_SNIPPET].decode("utf-8", "replace").strip()
        message = snippet if data is None and snippet else "The provider's stream failed."
    return UpstreamStreamFailed(
        message,
        type=kind if isinstance(kind, str) and kind else STREAM_ERROR_TYPE,
        error_code=str(code)
        if isinstance(code, str | int) and not isinstance(code, bool)
        else None,
    )
