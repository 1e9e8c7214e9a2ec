"""How cache entries are written to a shared backend: plain JSON, checked on the way back.

cachelib pickles what it stores and unpickles what it reads, so anyone who can write to the
Redis or the cache folder could run code in the worker that holds every provider key.
:class:`EntryCodec` replaces that through cachelib's own hook (each backend's ``serializer``):
an :class:`Entry` becomes one JSON document, bytes as base64, and only a document of exactly
that shape becomes an :class:`Entry` again. With a signing key the document carries an
HMAC-SHA256 (over the JSON, which names the entry's backend key, so a value cannot be copied to
another key either); then an unsigned or wrongly signed value is refused. A refused value is a
miss for the caller, counted and logged (once a minute), never an exception.

Wire form: ``pxj1:<json>``, or ``pxs1:<hex hmac>:<json>`` when signed, where the JSON is
``{"k": key, "s": stored_at, "t": ttl, "x": extensions, "v": value}`` and a ``bytes`` inside the
value is ``{"$b64": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from cachelib.serializers import BaseSerializer

from proxyapi.jsonio import encode_json

log = logging.getLogger(__name__)

PLAIN = b"pxj1:"
SIGNED = b"pxs1:"
_BYTES = "$b64"
# Nesting a stored value may have (responses are dicts of bytes, lists of model ids).
MAX_DEPTH = 20


@dataclass(frozen=True)
class Entry:
    """A cached value and its life: stored at ``stored_at`` (epoch seconds) for ``ttl``, under
    the backend key ``key``."""

    value: Any
    stored_at: float
    ttl: int
    extensions: int = 0
    key: str = ""

    @property
    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)


class Rejected(ValueError):
    """A stored value that is not an entry this gateway wrote."""

    # The metric's label: malformed, signature, misplaced (under another key), shape.
    reason = "malformed"


class BadSignature(Rejected):
    """A value unsigned where a signature is required, signed with another key, or signed
    where this configuration signs nothing."""

    reason = "signature"


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise TypeError("value nested too deeply to cache")
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _to_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _from_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise Rejected("nested too deeply")
    if isinstance(value, dict):
        if set(value) == {_BYTES}:
            encoded = value[_BYTES]
            if not isinstance(encoded, str):
                raise Rejected("bytes not base64 text")
            try:
                return base64.b64decode(encoded.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise Rejected("bytes not valid base64") from exc
        return {k: _from_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v, depth + 1) for v in value]
    return value


def _reject_constant(name: str) -> Any:
    raise Rejected(f"{name} in a stored value")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class EntryCodec(BaseSerializer):
    """cachelib serializer for :class:`Entry` values: JSON out, checked JSON in, no pickle."""

    def __init__(
        self, signing_key: bytes | None = None, on_refuse: Callable[[str], None] | None = None
    ) -> None:
        self.signing_key = signing_key
        # Told the reason of every refusal: the Prometheus counter.
        self.on_refuse = on_refuse
        self.rejected = 0
        self._lock = threading.Lock()
        self._logged_at = 0.0

    # ------------------------------------------------------------------ writing

    def dumps(self, value: Any, *args: Any, **kwargs: Any) -> bytes:
        if not isinstance(value, Entry):
            raise TypeError(f"the cache stores entries, not {type(value).__name__}")
        document = encode_json(
            {
                "k": value.key,
                "s": value.stored_at,
                "t": value.ttl,
                "x": value.extensions,
                "v": _to_json(value.value),
            }
        )
        if self.signing_key is None:
            return PLAIN + document
        return SIGNED + self._mac(document).encode("ascii") + b":" + document

    def dump(self, value: Any, f: IO[bytes], *args: Any, **kwargs: Any) -> None:
        f.write(self.dumps(value))

    # ------------------------------------------------------------------ reading

    def loads(self, bvalue: Any, *args: Any, **kwargs: Any) -> Entry | None:
        if bvalue is None:
            return None
        try:
            return self.decode(bytes(bvalue))
        except Rejected as exc:
            self.refuse(str(exc), exc.reason)
            return None

    def load(self, f: IO[bytes], *args: Any, **kwargs: Any) -> Entry | None:
        return self.loads(f.read())

    def decode(self, raw: bytes) -> Entry:
        """Turn stored bytes back into an :class:`Entry`; raise :class:`Rejected` otherwise."""
        if raw.startswith(SIGNED):
            mac, sep, document = raw[len(SIGNED) :].partition(b":")
            if not sep:
                raise Rejected("malformed")
            if self.signing_key is None:
                raise BadSignature("signed by another configuration")
            if not hmac.compare_digest(mac, self._mac(document).encode("ascii")):
                raise BadSignature("wrong signature")
        elif raw.startswith(PLAIN):
            if self.signing_key is not None:
                raise BadSignature("not signed")
            document = raw[len(PLAIN) :]
        else:
            raise Rejected("not a ProxyAPI cache entry (a pickle, or another program's)")
        try:
            data = json.loads(document, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise Rejected(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or set(data) != {"k", "s", "t", "x", "v"}:
            raise Rejected("not an entry")
        key, stored_at, ttl, extensions = data["k"], data["s"], data["t"], data["x"]
        if not isinstance(key, str) or not _count(ttl) or not _count(extensions):
            raise Rejected("entry fields of the wrong type")
        if (
            isinstance(stored_at, bool)
            or not isinstance(stored_at, (int, float))
            or not math.isfinite(stored_at)
        ):
            raise Rejected("entry time of the wrong type")
        return Entry(_from_json(data["v"]), float(stored_at), ttl, extensions, key)

    def _mac(self, document: bytes) -> str:
        assert self.signing_key is not None
        return hmac.new(self.signing_key, document, hashlib.sha256).hexdigest()

    def refuse(self, why: str, reason: str = "malformed") -> None:
        """Count (and now and then log) a stored value that is treated as a miss.

        ``reason`` is the metric's bounded label (see :attr:`Rejected.reason`); ``why`` is
        only logged.
        """
        if self.on_refuse is not None:
            self.on_refuse(reason)
        with self._lock:
            self.rejected += 1
            now = time.monotonic()
            quiet = now - self._logged_at < 60
            if not quiet:
                self._logged_at = now
        if not quiet:
            log.warning("cache: a stored value was refused and treated as a miss (%s)", why)
