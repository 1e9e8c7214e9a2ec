"""Managed client keys: created, scoped, expired, rotated and revoked at run time.

A key's record (its digest, never its secret) and an append-only audit log of every change
live in a shared store behind one small interface, :class:`KeyStore`:

- :class:`SQLiteKeyStore`: one file shared by the workers of one host (embedded mode);
- :class:`RedisKeyStore`: shared by every host (distributed mode), Cluster-safe.
"""

from __future__ import annotations

from proxyapi.keys.records import (
    ACTIONS,
    PLAINTEXT_PREFIX,
    SETTINGS_FIELDS,
    AuditEntry,
    KeyNameTaken,
    KeyStore,
    KeyStoreError,
    ManagedKey,
    check,
    check_audit,
    decode,
    decode_audit,
    encode,
    encode_audit,
    hint_of,
    key_digest,
    new_id,
    new_plaintext,
)
from proxyapi.keys.redis_store import RedisKeyStore
from proxyapi.keys.sqlite_store import SQLiteKeyStore

__all__ = [
    "ACTIONS",
    "PLAINTEXT_PREFIX",
    "SETTINGS_FIELDS",
    "AuditEntry",
    "KeyNameTaken",
    "KeyStore",
    "KeyStoreError",
    "ManagedKey",
    "RedisKeyStore",
    "SQLiteKeyStore",
    "check",
    "check_audit",
    "decode",
    "decode_audit",
    "encode",
    "encode_audit",
    "hint_of",
    "key_digest",
    "new_id",
    "new_plaintext",
]
