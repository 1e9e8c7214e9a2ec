"""What the managed-key store holds: keys (never their secrets) and the audit log of changes.

A managed key is stored as its digest (:func:`key_digest`), a hint a person may see
(:func:`hint_of`), and the ``auth.keys[]`` settings a config file would give it. The plaintext
is shown once, when it is made, and never stored.

Both stores keep one compact-JSON text per key and per audit entry, written only by
:func:`encode` and :func:`encode_audit`, which refuse what they could not read back. What a
store gives back is read by :func:`decode` and :func:`decode_audit`, which accept exactly what
the encoders write and return None for anything else: the store is shared, and may have been
written by someone else.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from proxyapi.config.checks import name as check_name
from proxyapi.config.values import hash_key, is_sha256_hex
from proxyapi.jsonio import JSONRejected, encode_json, is_count, parse_body

PLAINTEXT_PREFIX = "pk-"
ID_PREFIX = "key_"
# How much of a secret a hint shows after the prefix: enough to tell keys apart in a list.
HINT_CHARS = 4
HINT_END = "…"

# The auth.keys[] fields a managed key's settings may hold (name, sha256 and key_env are the
# key's own). Their values are checked as config by whoever builds the key's permissions.
SETTINGS_FIELDS = frozenset(
    ("admin", "models", "limits", "token_limits", "max_concurrent", "max_tokens", "budget")
)
ACTIONS = ("create", "update", "rotate", "revoke", "delete")
METADATA_MAX_ENTRIES = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 256
# The longest actor ("cli:<user>") or client address an audit entry keeps.
TEXT_MAX = 256
# The longest encoded key or audit entry: real ones are well under 4 KiB, and a longer value
# read back is refused before it is parsed.
MAX_ENCODED = 64 * 1024
# Settings and details nest no deeper than this (a config's budget list is three levels).
MAX_DEPTH = 16
# 9999-12-31T23:59:59Z: later times are not ones this gateway writes, and would overflow
# datetime when shown.
MAX_TIME = 253_402_300_799.0
# The most entries one audit_log call returns.
MAX_AUDIT_PAGE = 1000
# A detail field of an audit entry never has one of these names: they would hold a secret.
SECRET_FIELDS = frozenset(("digest", "previous_digest", "sha256", "plaintext", "secret"))

_ID_RE = re.compile(r"key_[0-9a-f]{24}")
# What hint_of writes: the prefix (for our keys) and up to 4 printable ASCII characters.
_HINT_RE = re.compile(rf"(?:{re.escape(PLAINTEXT_PREFIX)})?[!-~]{{0,{HINT_CHARS}}}{HINT_END}")
_HEX64_ANY_CASE = re.compile(r"[0-9a-fA-F]{64}")


def new_plaintext() -> str:
    """A new secret: ``pk-`` and 256 random bits, URL-safe."""
    return PLAINTEXT_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    """A new key id: 96 random bits, so two never collide by chance."""
    return ID_PREFIX + secrets.token_hex(12)


def key_digest(plaintext: str, pepper: bytes | None) -> str:
    """The 64-hex digest under which a managed key is stored.

    HMAC-SHA256(pepper, plaintext) when a pepper is set (PROXYAPI_KEY_PEPPER), else SHA-256, as
    config keys are hashed (proxyapi.config.values.hash_key). An empty pepper is refused: it
    would look set and add nothing.
    """
    if pepper is None:
        return hash_key(plaintext)
    if not pepper:
        raise ValueError("the key pepper is empty; unset it, or set at least 32 random bytes")
    return hmac.new(pepper, plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


def hint_of(plaintext: str) -> str:
    """What may be shown of a secret: ``pk-``, its next 4 characters, and ``…``.

    A secret without the prefix (one imported from elsewhere) shows its first 4.
    """
    prefix = PLAINTEXT_PREFIX if plaintext.startswith(PLAINTEXT_PREFIX) else ""
    shown = plaintext[len(prefix) : len(prefix) + HINT_CHARS]
    if not all("!" <= ch <= "~" for ch in shown):
        shown = ""  # not a key we would hand out; show nothing rather than something odd
    return prefix + shown + HINT_END


@dataclass(frozen=True)
class ManagedKey:
    """A client key created at run time: its digest, its settings, and its lifetime."""

    id: str
    name: str  # same rules as auth.keys[].name (proxyapi.config.checks.name)
    digest: str  # 64 lowercase hex
    hint: str
    # The auth.keys[] fields other than name/sha256/key_env, as a config file would give them
    # (see SETTINGS_FIELDS). JSON-compatible: dicts, lists, str, int, float, bool, None.
    settings: dict[str, Any]
    # At most 16 entries, keys <= 64 printable chars, values <= 256 printable chars.
    metadata: dict[str, str]
    created_at: float  # epoch seconds
    updated_at: float
    created_by: str  # actor, e.g. "key:root" or "cli:alice"
    expires_at: float | None = None
    revoked_at: float | None = None
    previous_digest: str | None = None  # after a rotation: the old secret's digest ...
    previous_until: float | None = None  # ... which keeps working until then


@dataclass(frozen=True)
class AuditEntry:
    """One change to the managed keys: who made it, from where, and what changed."""

    at: float
    actor: str  # who: "key:<name>" or "cli:<user>"
    action: str  # one of ACTIONS
    key_id: str
    key_name: str
    client: str  # from where: client address, or "cli"
    # What changed (field names and new values). NEVER a secret or digest: encode_audit
    # refuses top-level fields named in SECRET_FIELDS, and any text that is 64 hex digits or
    # starts with "pk-" (and is not a hint).
    detail: dict[str, Any]


_KEY_FIELDS = tuple(f.name for f in fields(ManagedKey))
_AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))
_KEY_TIMES = ("created_at", "updated_at")
_KEY_OPTIONAL_TIMES = ("expires_at", "revoked_at", "previous_until")


class KeyNameTaken(Exception):
    """create() was given a name another managed key has."""


class KeyStoreError(Exception):
    """The key store could not be read or written; the store's own error is the cause."""


class KeyStore(Protocol):
    """Where managed keys and their audit log live: one SQLite file per host, or Redis."""

    def version(self) -> int:
        """A number that changes on every write, in one cheap read; 0 for a new store."""

    def load(self) -> tuple[int, list[ManagedKey]]:
        """A consistent snapshot: the version, and every key that decodes (sorted by name)."""

    def get(self, key_id: str) -> ManagedKey | None:
        """The key with this id, or None if there is none (or it does not decode)."""

    def create(self, key: ManagedKey, audit: AuditEntry) -> None:
        """Store a new key, bump the version and append ``audit``, all or nothing.

        Raises KeyNameTaken if a managed key has its name (nothing is written then).
        """

    def replace(self, key: ManagedKey, audit: AuditEntry) -> bool:
        """Update the key with ``key.id``, bump the version and append ``audit``, atomically.

        False if there is no such key. ValueError if ``key.name`` is not its name (a name
        cannot change).
        """

    def delete(self, key_id: str, audit: AuditEntry) -> bool:
        """Remove a key, bump the version and append ``audit``, atomically.

        False if there is no such key (and nothing is appended). ValueError if
        ``audit.key_name`` is not its name.
        """

    def audit_log(
        self, limit: int = 100, before: str | None = None
    ) -> list[tuple[str, AuditEntry]]:
        """Up to ``limit`` entries, newest first, each with an opaque cursor.

        ``before`` (a cursor) pages back; entries that do not decode are skipped. ValueError
        for a limit outside 1..MAX_AUDIT_PAGE or a cursor this store did not give.
        """

    def close(self) -> None:
        """Let go of this process's connection."""


def page_size(limit: object) -> int:
    """Check an audit_log limit."""
    if not is_count(limit) or not 1 <= limit <= MAX_AUDIT_PAGE:
        raise ValueError(f"audit limit must be a whole number 1-{MAX_AUDIT_PAGE}, got {limit!r}")
    return limit


# --- checks shared by the encoders (which raise) and the decoders (which return None) -----


def _is_text(value: Any, longest: int, shortest: int = 1) -> bool:
    return isinstance(value, str) and shortest <= len(value) <= longest and value.isprintable()


def is_key_name(value: Any) -> bool:
    """Tell whether ``value`` is a valid key name (as auth.keys[].name)."""
    # isprintable: the config's pattern ends in '$', which also matches before a final '\n'.
    if not isinstance(value, str) or not value.isprintable():
        return False
    try:
        check_name(value)
    except ValueError:
        return False
    return True


def is_key_id(value: Any) -> bool:
    """Tell whether ``value`` is a key id as :func:`new_id` makes them."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _is_time(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_TIME
    )


def _plain_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not plain JSON data (dict, list, str, int, finite float, bool, None)."""
    if depth > MAX_DEPTH:
        return f"nests deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"holds {value!r}, which JSON cannot"
    if isinstance(value, list):
        items: Iterable[Any] = value
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "has a key that is not a string"
        items = value.values()
    else:
        # Tuples too: they would come back as lists, and not compare equal.
        return f"holds a {type(value).__name__}, not JSON data"
    for item in items:
        problem = _plain_problem(item, depth + 1)
        if problem is not None:
            return problem
    return None


def _metadata_problem(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return "must be a mapping of text to text"
    if len(metadata) > METADATA_MAX_ENTRIES:
        return f"has {len(metadata)} entries; at most {METADATA_MAX_ENTRIES} are kept"
    for key, value in metadata.items():
        if not _is_text(key, METADATA_KEY_MAX):
            return f"keys must be 1-{METADATA_KEY_MAX} printable characters, got {key!r:.80}"
        if not _is_text(value, METADATA_VALUE_MAX, shortest=0):
            return f"values must be text of at most {METADATA_VALUE_MAX} printable characters"
    return None


def key_problem(data: dict[str, Any]) -> str | None:
    """Why a key's fields (as a dict) are not a key this store writes, or None."""
    if set(data) != set(_KEY_FIELDS):
        return f"must have exactly the fields {', '.join(_KEY_FIELDS)}"
    if not is_key_id(data["id"]):
        return f"id must be 'key_' and 24 hex digits, got {data['id']!r:.80}"
    if not is_key_name(data["name"]):
        return f"name must be 1-64 letters, digits, '_', '.' or '-', got {data['name']!r:.80}"
    for field in ("digest", "previous_digest"):
        value = data[field]
        if not (isinstance(value, str) and is_sha256_hex(value)) and (
            field == "digest" or value is not None
        ):
            return f"{field} must be 64 lowercase hex digits"
    if not isinstance(data["hint"], str) or _HINT_RE.fullmatch(data["hint"]) is None:
        return "hint must be what hint_of gives"
    settings = data["settings"]
    if not isinstance(settings, dict):
        return "settings must be a mapping"
    unknown = sorted(str(k) for k in settings if k not in SETTINGS_FIELDS)
    if unknown:
        return f"settings may hold only {', '.join(sorted(SETTINGS_FIELDS))}, not {unknown!r:.80}"
    problem = _plain_problem(settings)
    if problem is not None:
        return f"settings {problem}"
    problem = _metadata_problem(data["metadata"])
    if problem is not None:
        return f"metadata {problem}"
    for field in _KEY_TIMES:
        if not _is_time(data[field]):
            return f"{field} must be epoch seconds, got {data[field]!r:.80}"
    for field in _KEY_OPTIONAL_TIMES:
        if data[field] is not None and not _is_time(data[field]):
            return f"{field} must be epoch seconds or None, got {data[field]!r:.80}"
    if not _is_text(data["created_by"], TEXT_MAX):
        return f"created_by must be 1-{TEXT_MAX} printable characters"
    if (data["previous_digest"] is None) != (data["previous_until"] is None):
        return "previous_digest and previous_until are set together, or neither"
    return None


def _secret_like(value: Any) -> bool:
    """Tell whether a detail value is a digest or a key of ours (a hint is neither)."""
    if isinstance(value, str):
        if _HEX64_ANY_CASE.fullmatch(value):
            return True
        return value.startswith(PLAINTEXT_PREFIX) and not _HINT_RE.fullmatch(value)
    if isinstance(value, list):
        return any(_secret_like(item) for item in value)
    if isinstance(value, dict):
        return any(_secret_like(k) or _secret_like(v) for k, v in value.items())
    return False


def audit_problem(data: dict[str, Any]) -> str | None:
    """Why an audit entry's fields (as a dict) are not an entry this store writes, or None."""
    if set(data) != set(_AUDIT_FIELDS):
        return f"must have exactly the fields {', '.join(_AUDIT_FIELDS)}"
    if not _is_time(data["at"]):
        return f"at must be epoch seconds, got {data['at']!r:.80}"
    if not isinstance(data["action"], str) or data["action"] not in ACTIONS:
        return f"action must be one of {', '.join(ACTIONS)}, got {data['action']!r:.80}"
    if not is_key_id(data["key_id"]):
        return "key_id must be 'key_' and 24 hex digits"
    if not is_key_name(data["key_name"]):
        return "key_name must be a key's name"
    for field in ("actor", "client"):
        if not _is_text(data[field], TEXT_MAX):
            return f"{field} must be 1-{TEXT_MAX} printable characters"
    detail = data["detail"]
    if not isinstance(detail, dict):
        return "detail must be a mapping"
    problem = _plain_problem(detail)
    if problem is not None:
        return f"detail {problem}"
    named = sorted(SECRET_FIELDS.intersection(detail))
    if named:
        return f"detail must not hold {', '.join(named)}: an audit entry never holds a secret"
    if _secret_like(detail):
        return "detail holds text that is a digest or a key (64 hex digits, or 'pk-...')"
    return None


# --- encoding -------------------------------------------------------------------------------


def _as_fields(obj: ManagedKey | AuditEntry, names: tuple[str, ...]) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies, and the values are only read.
    return {name: getattr(obj, name) for name in names}


def _encoded(data: dict[str, Any], what: str) -> str:
    # encode_json writes a lone surrogate as an escape, so the text is always valid UTF-8.
    text = encode_json(data).decode("utf-8")
    if len(text) > MAX_ENCODED:
        raise ValueError(f"{what} is {len(text)} characters encoded; at most {MAX_ENCODED}")
    return text


def check(key: ManagedKey) -> None:
    """Raise ValueError, saying which field and why, if ``key`` cannot be stored."""
    problem = key_problem(_as_fields(key, _KEY_FIELDS))
    if problem is not None:
        raise ValueError(f"managed key {key.name!r:.80}: {problem}")


def check_audit(entry: AuditEntry) -> None:
    """Raise ValueError, saying which field and why, if ``entry`` cannot be stored."""
    problem = audit_problem(_as_fields(entry, _AUDIT_FIELDS))
    if problem is not None:
        raise ValueError(f"audit entry: {problem}")


def encode(key: ManagedKey) -> str:
    """The compact JSON a store keeps for ``key``; ValueError if :func:`decode` would refuse it."""
    check(key)
    data = _as_fields(key, _KEY_FIELDS)
    for field in (*_KEY_TIMES, *_KEY_OPTIONAL_TIMES):
        if data[field] is not None:
            data[field] = float(data[field])
    return _encoded(data, f"managed key {key.name!r}")


def encode_audit(entry: AuditEntry) -> str:
    """The compact JSON a store keeps for ``entry``; ValueError if it could not be read back."""
    check_audit(entry)
    data = _as_fields(entry, _AUDIT_FIELDS)
    data["at"] = float(data["at"])
    return _encoded(data, "audit entry")


# --- decoding: never raises, never trusts -----------------------------------------------------


def _parsed(raw: Any) -> dict[str, Any] | None:
    """The JSON object in ``raw`` (text or UTF-8 bytes), or None."""
    if isinstance(raw, str):
        if len(raw) > MAX_ENCODED:
            return None
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            return None
    if not isinstance(raw, bytes | bytearray | memoryview):
        return None
    raw = bytes(raw)
    # UTF-8 takes up to 3 bytes for each character the encoder counts (4 for two).
    if len(raw) > 3 * MAX_ENCODED:
        return None
    try:
        value = parse_body(raw)
    except JSONRejected:
        return None
    return value if isinstance(value, dict) else None


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def decode(raw: str | bytes) -> ManagedKey | None:
    """The key in ``raw`` if it is exactly as :func:`encode` writes one, else None."""
    data = _parsed(raw)
    if data is None or key_problem(data) is not None:
        return None
    return ManagedKey(
        id=data["id"],
        name=data["name"],
        digest=data["digest"],
        hint=data["hint"],
        settings=data["settings"],
        metadata=data["metadata"],
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
        created_by=data["created_by"],
        expires_at=_time(data["expires_at"]),
        revoked_at=_time(data["revoked_at"]),
        previous_digest=data["previous_digest"],
        previous_until=_time(data["previous_until"]),
    )


def decode_audit(raw: str | bytes) -> AuditEntry | None:
    """The audit entry in ``raw`` if it is exactly as :func:`encode_audit` writes one."""
    data = _parsed(raw)
    if data is None or audit_problem(data) is not None:
        return None
    return AuditEntry(
        at=float(data["at"]),
        actor=data["actor"],
        action=data["action"],
        key_id=data["key_id"],
        key_name=data["key_name"],
        client=data["client"],
        detail=data["detail"],
    )


def with_unique_names(keys: Iterable[ManagedKey]) -> list[ManagedKey]:
    """``keys`` sorted by name, without any name that more than one of them has.

    The stores keep names unique; two keys with one name were planted, and picking either
    could give a client the other's permissions, so neither is kept.
    """
    by_name: dict[str, list[ManagedKey]] = {}
    for key in keys:
        by_name.setdefault(key.name, []).append(key)
    return [found[0] for name, found in sorted(by_name.items()) if len(found) == 1]


def check_write(key: ManagedKey, audit: AuditEntry) -> tuple[str, str]:
    """Encode a key and its audit entry for a write; ValueError if they do not belong together."""
    if (audit.key_id, audit.key_name) != (key.id, key.name):
        raise ValueError(
            f"the audit entry is for {audit.key_name!r} ({audit.key_id}), "
            f"not {key.name!r} ({key.id})"
        )
    return encode(key), encode_audit(audit)
