"""An official SDK client whose HTTP transport records requests and answers what it is given,
for the translators' unit tests (the SDK parses what a translator makes, with no server)."""

from __future__ import annotations

import json
from typing import Any

import httpx2


class RecordingTransport:
    """What the SDK sent (JSON bodies), and the answer it gets next."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: httpx2.Response = httpx2.Response(500)
        self.http = httpx2.Client(transport=httpx2.MockTransport(self._handle))

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        return self.reply

    def answer(self, body: dict[str, Any]) -> None:
        self.reply = httpx2.Response(200, json=body)

    def stream(self, events: list[bytes], step: int | None = None) -> None:
        """Answer an event stream, in pieces of ``step`` bytes (whole by default)."""
        raw = b"".join(events)
        pieces = [raw] if step is None else [raw[i : i + step] for i in range(0, len(raw), step)]
        self.reply = httpx2.Response(
            200, content=iter(pieces), headers={"content-type": "text/event-stream"}
        )
