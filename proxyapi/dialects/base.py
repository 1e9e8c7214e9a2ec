"""What an ingress dialect is: the small set of things that differ between the APIs clients
speak, while the request pipeline (auth, limits, routing, cache, fallback, settle) is one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Headers

from proxyapi.errors import ProxyAPIError
from proxyapi.providers.base import ClientBody, Operation

if TYPE_CHECKING:
    from proxyapi.routing import Target

# Told the provider that answered and the answer object, once a request has its whole answer.
Keeper = Callable[[str, Mapping[str, Any]], None]


class Dialect(ABC):
    """One API clients speak: how its requests are checked, and its streams and errors framed."""

    #: the name of its error shape (:mod:`proxyapi.dialects.shapes`)
    name: str

    @abstractmethod
    def validate(self, op: Operation, body: Mapping[str, Any]) -> None:
        """Check the fields the gateway relies on; raise InvalidRequest naming the bad one."""

    def stream_body(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The body to stream, asking for usage (every answer is priced) when the dialect does
        not report it by itself; and whether to keep the usage chunk from the client."""
        return body, False

    @abstractmethod
    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
        """An error in the middle of a stream, as the dialect's clients expect it."""

    @abstractmethod
    def replay(self, answer: bytes, body: Mapping[str, Any]) -> list[bytes] | None:
        """A cached answer as the events of the stream it would have been (None: cannot)."""

    def cache_body(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The part of the body that decides the answer, for the cache key."""
        return body

    def cacheable(self, body: Mapping[str, Any]) -> bool:
        """Whether an answer to ``body`` may come from the cache at all (the cache's own rules
        decide next)."""
        return True

    def prepare(
        self, body: ClientBody, owner: str, targets: list[Target]
    ) -> tuple[ClientBody, list[Target]]:
        """The request to send, and the providers to try, once the gateway's own state is
        applied (a Responses follow-up: its conversation, its provider). ``owner``: the key's
        name and digest."""
        return body, targets

    def keeper(self, body: Mapping[str, Any], owner: str) -> Keeper | None:
        """What to do with the whole answer once it is there (None: nothing)."""
        return None

    def response_headers(self, request_id: str) -> dict[str, str]:
        """Headers every response of the dialect carries."""
        return {}

    def session(self, headers: Headers) -> str | None:
        """The client's session id, for the access line (None: the dialect has none)."""
        return None
