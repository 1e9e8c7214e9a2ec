"""A provider's own Responses API stream, relayed to a Responses client as it is.

Each event's data goes out byte for byte (reasoning items with ``encrypted_content``, hosted
tool events, events added after this was written); only the framing is normalized
(``event: <type>`` and one ``data:`` line). ``response.created`` and ``response.in_progress``
wait for the next event, so a failure the provider reports right after starting
(``response.failed``, ``error``) leaves nothing sent and the request can still go to another
provider; a failure later is relayed as the provider sent it. The stream is complete at
``response.completed``, ``response.incomplete`` or ``response.failed``; usage and the final
response come from the first two. A stream cut short gets a ``response.failed`` that continues
its sequence numbers (:meth:`ResponsesPassThrough.error_event`), since Codex and the SDKs treat
a stream without a terminal event as broken.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from proxyapi.errors import ProxyAPIError, UpstreamStreamFailed, redact
from proxyapi.providers.base import Usage
from proxyapi.providers.passthrough import EventPassThrough
from proxyapi.providers.sse import sse_event
from proxyapi.translate.responses_chat import failed_response, failure_code, new_id

# Events that open a stream and are held back until the next one.
_OPENING = frozenset({"response.created", "response.in_progress"})
# Events after which nothing more comes.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_FAILURES = frozenset({"response.failed", "error"})


class ResponsesPassThrough(EventPassThrough):
    """A Responses stream for a Responses client: whole events, unchanged data."""

    OPENING = _OPENING

    def __init__(self, provider: str, request: Mapping[str, Any]) -> None:
        super().__init__(provider)
        self.request = request
        self._response: dict[str, Any] | None = None  # the latest snapshot the provider sent
        self._sequence = -1

    def _failure_of(self, kind: str, data: Any) -> UpstreamStreamFailed | None:
        # Nothing was sent yet: fail this attempt, so another provider may be tried. Later, the
        # provider's own failure events are relayed as they are.
        return _failure_of(data) if not self._started and kind in _FAILURES else None

    def _observe(self, kind: str, data: dict[str, Any]) -> None:
        sequence = data.get("sequence_number")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            self._sequence = max(self._sequence, sequence)
        response = data.get("response")
        if isinstance(response, dict):
            self._response = response
        if kind in _TERMINAL:
            if kind != "response.failed" and isinstance(response, dict):
                self.final = response
                model = response.get("model")
                billed = model if isinstance(model, str) and model else None
                self.usage = Usage.from_responses(response.get("usage"), billed) or self.usage
            # Last: the relay's thread may read complete at any moment, and then wants final.
            self.complete = True

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
        """``response.failed`` for this response, next in its sequence."""
        error = {
            "code": failure_code(exc),
            "message": redact(str(exc.description), secrets),
        }
        if self._response is not None and isinstance(self._response.get("id"), str):
            response = {**self._response, "status": "failed", "error": error}
        else:
            created = int(time.time())
            response = failed_response(new_id("resp"), created, self.request, exc, secrets)
        self._sequence += 1
        payload = {"type": "response.failed", "sequence_number": self._sequence}
        return sse_event({**payload, "response": response}, "response.failed")


def _failure_of(data: Any) -> UpstreamStreamFailed:
    """The error a ``response.failed`` or ``error`` event reports."""
    error: Any = None
    if isinstance(data, dict):
        response = data.get("response")
        error = response.get("error") if isinstance(response, dict) else data
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message")
    return UpstreamStreamFailed(
        message if isinstance(message, str) and message else "The response failed.",
        type="rate_limit_error" if code == "rate_limit_exceeded" else None,
        error_code=code,
    )
