"""The gateway's store of Responses API responses, for ``previous_response_id`` and
``GET``/``DELETE /v1/responses/{id}``.

A provider that serves the Responses API keeps its own responses; the gateway only notes which
provider made each one (a *pin*), so a follow-up goes back to it. A response the gateway made by
translation is *kept*: the response object, and the conversation up to and including it (the
input items it was made from, the earlier turns' included, then its output items), so a
follow-up turn needs one read. Entries live in the cache backend (category
``stored_responses``, ``responses.store_ttl`` seconds, every key under the deployment's
namespace) per tenant: the key's name and digest are part of the entry's key and are checked in
its value, so no other key can read, continue or delete a response.

Values are plain JSON checked for shape when read back (a shared store may hold anything); one
that fails is a miss. A conversation larger than ``max_bytes`` is not kept (logged): its
follow-up then gets 400 ``previous_response_not_found``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from proxyapi.cache.store import CacheStore
from proxyapi.config import Config
from proxyapi.jsonio import encode_json

EXTENSION = "proxyapi.response_store"
CATEGORY = "stored_responses"
_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """One stored response: a pin (``provider`` set) or a kept response and its conversation."""

    response_id: str
    provider: str | None = None
    response: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None


def input_items(value: Any) -> list[dict[str, Any]]:
    """A request's ``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [item for item in value or () if isinstance(item, dict)]


class ResponseStore:
    """Pins and kept responses, per tenant, in the cache backend."""

    def __init__(self, store: CacheStore, ttl: int, max_bytes: int, keep: bool = True) -> None:
        self.store = store
        self.ttl = ttl
        self.max_bytes = max_bytes
        # responses.store: false keeps no translated response (pins hold no content).
        self.keep_enabled = keep

    @staticmethod
    def _key(owner: str, response_id: str) -> str:
        tenant = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return (
            f"{tenant}:{hashlib.sha256(response_id.encode('utf-8', 'surrogatepass')).hexdigest()}"
        )

    def pin(self, owner: str, response_id: str, provider: str) -> bool:
        """Note that ``provider`` made (and keeps) ``response_id``."""
        value = {"v": _VERSION, "owner": owner, "id": response_id, "provider": provider}
        return self.store.set(CATEGORY, self._key(owner, response_id), value, self.ttl)

    def keep(self, owner: str, response: Mapping[str, Any], items: list[dict[str, Any]]) -> bool:
        """Keep a response the gateway made, with the conversation up to it."""
        response_id = response.get("id")
        if not self.keep_enabled or not isinstance(response_id, str):
            return False
        conversation = encode_json(items)
        if len(conversation) > self.max_bytes:
            log.info(
                "response %s not kept: its conversation is %d bytes (at most %d)",
                response_id,
                len(conversation),
                self.max_bytes,
            )
            return False
        # Kept as JSON text: a conversation nests deeper than the cache's entry codec allows.
        value = {
            "v": _VERSION,
            "owner": owner,
            "id": response_id,
            "response": encode_json(response).decode("utf-8"),
            "items": conversation.decode("utf-8"),
        }
        return self.store.set(CATEGORY, self._key(owner, response_id), value, self.ttl)

    def lookup(self, owner: str, response_id: str) -> Stored | None:
        """The stored response ``response_id`` of ``owner``, or None."""
        entry = self.store.get(CATEGORY, self._key(owner, response_id), quiet=True)
        if entry is None:
            return None
        stored = _read(entry.value, owner, response_id)
        if stored is None and self.store.codec is not None:
            self.store.codec.refuse("a stored response of the wrong shape", "shape")
        return stored

    def delete(self, owner: str, response_id: str) -> bool:
        """Forget ``response_id``; False if it was not there."""
        return self.store.delete(CATEGORY, self._key(owner, response_id))


def _read(value: Any, owner: str, response_id: str) -> Stored | None:
    """Check what the backend gave back; None unless it is an entry this store wrote."""
    if not isinstance(value, dict) or value.get("v") != _VERSION:
        return None
    if value.get("owner") != owner or value.get("id") != response_id:
        return None
    provider = value.get("provider")
    if isinstance(provider, str):
        return Stored(response_id, provider=provider)
    try:
        response = json.loads(value.get("response", ""))
        items = json.loads(value.get("items", ""))
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(response, dict) or response.get("id") != response_id:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    return Stored(response_id, response=response, items=items)


def init_app(app: Flask, config: Config, store: CacheStore) -> ResponseStore:
    """Keep the app's :class:`ResponseStore` in ``app.extensions``."""
    # A conversation may outgrow one request body (each turn sends only its new part), but not
    # by much before it outgrows every model's context window.
    responses = ResponseStore(
        store,
        config.responses.store_ttl,
        max_bytes=4 * config.server.max_body_bytes,
        keep=config.responses.store,
    )
    app.extensions[EXTENSION] = responses
    return responses
