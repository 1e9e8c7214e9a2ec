"""Which requests may be answered from the cache, and the key their answers are stored under.

The key is a SHA-256 over the canonical JSON (sorted keys, no whitespace) of everything that
decides the answer: the whole request body except ``stream`` and ``stream_options`` (they change
the framing, not the answer), the route, the providers (by name and identity: URL and a digest
of the credential) and upstream models the request resolves to, and the tenant (the key's name
and digest, or ``shared``). Two requests that differ in any parameter,
even one the gateway does not know, get different keys; the order of parameters does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from proxyapi.jsonio import encode_json
from proxyapi.providers.base import Operation

# Framing only: a streamed and a non-streamed request get the same answer.
FRAMING_FIELDS = frozenset({"stream", "stream_options"})
SHARED_SCOPE = "shared"


def cache_key(
    op: Operation,
    body: Mapping[str, Any],
    targets: Iterable[tuple[str, ...]],
    tenant: str,
) -> str:
    """Return the hex key for an answer to ``body`` on ``op``, served for ``tenant``."""
    material = {
        "route": op.value,
        "body": {k: v for k, v in body.items() if k not in FRAMING_FIELDS},
        "targets": [list(t) for t in targets],
        "tenant": tenant,
    }
    return hashlib.sha256(encode_json(material, sort_keys=True)).hexdigest()


def is_deterministic(op: Operation, body: Mapping[str, Any]) -> bool:
    """Tell whether the same request should get the same answer.

    Embeddings always do. A completion does when it asks for one choice (``n`` absent or 1) at
    ``temperature`` 0, or with no temperature but a ``seed``.
    """
    if op is Operation.EMBEDDINGS:
        return True
    if body.get("n", 1) not in (None, 1):
        return False
    temperature = body.get("temperature")
    if temperature is None:
        return body.get("seed") is not None
    return bool(temperature == 0)


def cacheable(op: Operation, body: Mapping[str, Any], mode: str) -> bool:
    """Tell whether the answer to ``body`` may be cached under ``mode`` (the route's setting)."""
    if mode == "off":
        return False
    if mode == "all":
        return True
    return is_deterministic(op, body)
