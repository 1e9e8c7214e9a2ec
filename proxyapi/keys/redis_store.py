"""Managed keys in Redis, shared by every host of the deployment (distributed mode).

Layout (every key under one hash tag, so on a Redis Cluster they share a slot, and a script or
MULTI may touch them all):

- ``{ns:keys}:all``: a hash, key id -> encoded key;
- ``{ns:keys}:names``: a hash, key name -> key id (what keeps names unique);
- ``{ns:keys}:version``: a counter, INCR'd by every write;
- ``{ns:keys}:audit``: a stream, one entry (field ``data``) per change, trimmed to about
  ``audit_max`` entries; an entry's cursor is its stream id.

Each write is one Lua script that checks, writes the key, bumps the version and appends the
audit entry, so a reader sees all of a change or none of it; every value travels in ARGV.
redis-py's ``register_script`` runs them by EVALSHA and loads them again on NOSCRIPT (a restarted
or failed-over server). :meth:`RedisKeyStore.load` is a read-only script too (the version and
every key, one round trip, one state).

Everything is read as bytes (redis-py's ``NEVER_DECODE``), whether or not the client decodes
responses: a decoding client raises UnicodeDecodeError, not a RedisError, on a planted value
that is not UTF-8, and one such value would otherwise hide every key. What is read back is then
checked: a value this store would not have written is skipped.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import redis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

from proxyapi.keys.records import (
    AuditEntry,
    KeyNameTaken,
    KeyStoreError,
    ManagedKey,
    check_write,
    decode,
    decode_audit,
    encode_audit,
    page_size,
    with_unique_names,
)

# Longer than any count INCR can hold (19 digits): a longer value was not written by it.
_MAX_DIGITS = 19
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

# KEYS: all, names, version, audit. ARGV: id, name, key, audit entry, audit_max.
# Returns 1 (created), 0 (the name is taken) or -1 (the id is taken).
_CREATE = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then
    return -1
end
local holder = redis.call('hget', KEYS[2], ARGV[2])
-- A name whose key is gone (removed by hand) is free again.
if holder and redis.call('hexists', KEYS[1], holder) == 1 then
    return 0
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
redis.call('hset', KEYS[2], ARGV[2], ARGV[1])
redis.call('incr', KEYS[3])
redis.call('xadd', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[4])
return 1
"""

# KEYS, ARGV: as _CREATE. Returns 1 (replaced), 0 (no such key) or -1 (not its name).
_REPLACE = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 0 then
    return 0
end
if redis.call('hget', KEYS[2], ARGV[2]) ~= ARGV[1] then
    return -1
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[3])
redis.call('incr', KEYS[3])
redis.call('xadd', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[4])
return 1
"""

# KEYS: as _CREATE. ARGV: id, name, audit entry, audit_max.
# Returns 1 (deleted), 0 (no such key) or -1 (not its name).
_DELETE = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 0 then
    return 0
end
if redis.call('hget', KEYS[2], ARGV[2]) ~= ARGV[1] then
    return -1
end
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[2])
redis.call('incr', KEYS[3])
redis.call('xadd', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'data', ARGV[3])
return 1
"""


# KEYS: version, all. The version (or false) and the hash of every key, flat.
_LOAD = """
return {redis.call('get', KEYS[1]), redis.call('hgetall', KEYS[2])}
"""
_LOAD_SHA = hashlib.sha1(_LOAD.encode(), usedforsecurity=False).hexdigest()
# Passed to execute_command: read this answer as bytes, whatever the client decodes.
_RAW: dict[str, Any] = {NEVER_DECODE: []}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _version_of(value: Any) -> int:
    if value is None or value is False:
        return 0
    text = _text(value)
    if text is None or not (text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS):
        raise KeyStoreError(f"the key store's version is not a count: {value!r:.40}")
    return int(text)


class RedisKeyStore:
    """Managed keys in Redis (one node, Sentinel or a Cluster) under ``namespace``.

    ``client`` may decode responses or not. :meth:`close` leaves it open: it is shared.
    """

    def __init__(self, client: Any, namespace: str, audit_max: int = 100_000) -> None:
        if type(audit_max) is not int or audit_max < 1:
            raise ValueError(f"audit_max must be a whole number >= 1, got {audit_max!r}")
        self.client = client
        self.namespace = namespace
        self.audit_max = audit_max
        base = f"{{{namespace}:keys}}"
        self._all = f"{base}:all"
        self._names = f"{base}:names"
        self._version = f"{base}:version"
        self._audit = f"{base}:audit"
        self._keys = [self._all, self._names, self._version, self._audit]
        self._create = client.register_script(_CREATE)
        self._replace = client.register_script(_REPLACE)
        self._delete = client.register_script(_DELETE)

    def _run(self, script: Any, args: list[str]) -> int:
        """Run a write script; its status code."""
        try:
            return int(script(keys=self._keys, args=args))
        except redis.RedisError as exc:
            raise KeyStoreError(f"Redis refused a key store write: {exc}") from exc

    def version(self) -> int:
        """The version (one GET); 0 for a new store."""
        try:
            value = self.client.execute_command("GET", self._version, **_RAW)
        except redis.RedisError as exc:
            raise KeyStoreError(f"cannot read the key store version: {exc}") from exc
        return _version_of(value)

    def load(self) -> tuple[int, list[ManagedKey]]:
        """The version and every key that decodes, in one read-only script (one round trip).

        A script, not MULTI: a transaction's answers are decoded together by a decoding client.
        Like MULTI, it runs between writes, never during one, so it sees one state.
        """
        keys = [self._version, self._all]
        try:
            try:
                answer = self.client.execute_command("EVALSHA", _LOAD_SHA, 2, *keys, **_RAW)
            except NoScriptError:
                # Not loaded on this server yet (or any more): sent whole, once.
                answer = self.client.execute_command("EVAL", _LOAD, 2, *keys, **_RAW)
        except redis.RedisError as exc:
            raise KeyStoreError(f"cannot read the managed keys: {exc}") from exc
        if not (isinstance(answer, list) and len(answer) == 2):
            raise KeyStoreError(f"the key store answered a load with {answer!r:.80}")
        version, flat = answer
        found = []
        if isinstance(flat, list):
            for raw_id, raw in zip(flat[::2], flat[1::2], strict=False):
                key = decode(raw)
                if key is not None and key.id == _text(raw_id):
                    found.append(key)
        return _version_of(version), with_unique_names(found)

    def get(self, key_id: str) -> ManagedKey | None:
        """The key with this id, or None."""
        try:
            raw = self.client.execute_command("HGET", self._all, key_id, **_RAW)
        except redis.RedisError as exc:
            raise KeyStoreError(f"cannot read managed key {key_id!r:.40}: {exc}") from exc
        key = decode(raw) if raw is not None else None
        return key if key is not None and key.id == key_id else None

    def create(self, key: ManagedKey, audit: AuditEntry) -> None:
        """Store a new key; KeyNameTaken if one has its name. See :class:`KeyStore`."""
        data, entry = check_write(key, audit)
        status = self._run(self._create, [key.id, key.name, data, entry, str(self.audit_max)])
        if status == 0:
            raise KeyNameTaken(f"a managed key is already named {key.name!r}")
        if status < 0:
            raise ValueError(f"a managed key already has the id {key.id}")

    def replace(self, key: ManagedKey, audit: AuditEntry) -> bool:
        """Update an existing key (same id and name); False if there is none."""
        data, entry = check_write(key, audit)
        status = self._run(self._replace, [key.id, key.name, data, entry, str(self.audit_max)])
        if status < 0:
            raise ValueError(f"managed key {key.id} is not named {key.name!r}; names are kept")
        return status == 1

    def delete(self, key_id: str, audit: AuditEntry) -> bool:
        """Remove a key; False if there is none (and no audit entry is appended)."""
        if audit.key_id != key_id:
            raise ValueError(f"the audit entry is for {audit.key_id}, not {key_id}")
        entry = encode_audit(audit)
        status = self._run(self._delete, [key_id, audit.key_name, entry, str(self.audit_max)])
        if status < 0:
            raise ValueError(f"managed key {key_id} is not named {audit.key_name!r}")
        return status == 1

    def audit_log(
        self, limit: int = 100, before: str | None = None
    ) -> list[tuple[str, AuditEntry]]:
        """Up to ``limit`` entries older than the cursor ``before``, newest first (XREVRANGE)."""
        limit = page_size(limit)
        if before is not None and not (
            isinstance(before, str) and _STREAM_ID.fullmatch(before) is not None
        ):
            raise ValueError(f"not an audit cursor of this store: {before!r:.40}")
        # '(' makes the bound exclusive (Redis 6.2+).
        upper = "+" if before is None else f"({before}"
        found: list[tuple[str, AuditEntry]] = []
        # Entries that do not decode are skipped, and more read in their place, so a short page
        # means the log ends there.
        while len(found) < limit:
            try:
                rows = self.client.execute_command(
                    "XREVRANGE", self._audit, upper, "-", "COUNT", limit, **_RAW
                )
            except redis.RedisError as exc:
                raise KeyStoreError(f"cannot read the key audit log: {exc}") from exc
            if not isinstance(rows, list):
                break
            last = None
            for row in rows:
                cursor, entry = _audit_row(row)
                if cursor is None:
                    continue
                last = cursor
                if entry is not None and len(found) < limit:
                    found.append((cursor, entry))
            if len(rows) < limit or last is None:
                break
            upper = f"({last}"
        return found

    def close(self) -> None:
        """Nothing to do: the client belongs to the caller."""


def _audit_row(row: Any) -> tuple[str | None, AuditEntry | None]:
    """A stream entry's id and the audit entry in its ``data`` field (None if it has none)."""
    if not (isinstance(row, tuple | list) and len(row) == 2):
        return None, None
    raw_id, fields = row
    cursor = _text(raw_id)
    if cursor is None or _STREAM_ID.fullmatch(cursor) is None:
        return None, None
    if not isinstance(fields, dict) or len(fields) != 1:
        return cursor, None
    ((name, raw),) = fields.items()
    if _text(name) != "data":
        return cursor, None
    return cursor, decode_audit(raw)
