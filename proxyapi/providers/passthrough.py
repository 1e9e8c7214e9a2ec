"""A provider's event stream relayed to a client of the same dialect, observed on the way.

Each event's data goes out byte for byte; only the framing is normalized (``event: <type>``,
then the data). The events that open a stream (:attr:`EventPassThrough.OPENING`) wait for the
next one, so a failure the provider reports right after starting leaves nothing sent and the
request can still go to another provider. A dialect's subclass says what it reads from each
event (:meth:`EventPassThrough._observe`: usage, completeness) and which events are failures to
raise (:meth:`EventPassThrough._failure_of`) rather than relay.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from typing import Any, ClassVar

from proxyapi.errors import UpstreamStreamFailed
from proxyapi.providers.base import StreamTranslator
from proxyapi.providers.sse import ServerEvent, SSEParser, sse_event


class EventPassThrough(StreamTranslator):
    """Whole events of the provider's own stream, unchanged data."""

    #: events held back until the next one
    OPENING: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._parser = SSEParser()
        self._held: list[bytes] = []
        self._started = False
        self._failure: UpstreamStreamFailed | None = None

    @abstractmethod
    def _observe(self, kind: str, data: dict[str, Any]) -> None:
        """Read what an event says (usage, the end) before it is relayed."""

    @abstractmethod
    def _failure_of(self, kind: str, data: Any) -> UpstreamStreamFailed | None:
        """The failure an event reports, when it is to be raised rather than relayed."""

    def feed(self, chunk: bytes) -> list[bytes]:
        out = self._pass(self._parser.feed(chunk))
        if self._failure is not None and not out:
            raise self._failure
        return out  # a failure found in this chunk is raised on the next call

    def close(self) -> list[bytes]:
        if self._failure is not None:
            raise self._failure
        return self._pass(self._parser.close())

    def _pass(self, events: list[ServerEvent]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if self._failure is not None or self.complete:
                break
            try:
                data = json.loads(event.data)
            except (ValueError, RecursionError):  # UnicodeDecodeError included
                data = None
            kind = data.get("type") if isinstance(data, dict) else None
            if not isinstance(kind, str):
                kind = event.event
            failure = self._failure_of(kind, data)
            if failure is not None:
                self._failure = failure
                break
            if isinstance(data, dict):
                self._observe(kind, data)
            # A type no event line can carry (a line break in it) goes without the line.
            framed = sse_event(event.data, kind if kind and kind.isprintable() else None)
            if not self._started and kind in self.OPENING:
                self._held.append(framed)
                continue
            if not self._started:
                self._started = True
                out.extend(self._held)
                self._held = []
            out.append(framed)
        return out
