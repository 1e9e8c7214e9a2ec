"""Managed keys in one SQLite file, shared by every worker process on the host (embedded mode).

Three tables: ``keys`` (one row per key: its id, its name, kept unique by SQLite, and the
encoded record), ``meta`` (one row: the version, bumped by every write) and ``audit`` (one row
per change, append-only: triggers abort any UPDATE or DELETE of it, so no caller can rewrite
history through SQLite). Each write is one ``BEGIN IMMEDIATE`` transaction: the key, the version
and the audit entry change together or not at all, and a worker waits (up to 5 s,
``proxyapi.sqlite_file.BUSY_TIMEOUT``) while another writes. WAL mode lets the others read
meanwhile, and a read of several tables in one transaction sees one snapshot.

Each process has its own connection (:mod:`proxyapi.sqlite_file`), shared by its threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
from proxyapi.sqlite_file import ProcessConnection

_APPEND_ONLY = "the managed-key audit log is append-only"
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (typeof(version) = 'integer' AND version >= 0)
);
INSERT OR IGNORE INTO meta (id, version) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    data TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END;
COMMIT;
"""
# An UPSERT, so a meta row deleted by hand is made again rather than the bump silently lost.
_BUMP = (
    "INSERT INTO meta (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = version + 1"
)
# The biggest cursor: SQLite's rowids are signed 64-bit.
_MAX_SEQ = 2**63 - 1


def _version_of(row: tuple[object, ...] | None) -> int:
    if row is None:
        return 0  # the meta row was deleted by hand: the next write makes it again
    (version,) = row
    if type(version) is not int or version < 0:
        raise KeyStoreError(f"the key store's version is not a count: {version!r:.40}")
    return version


def _seq(cursor: str | None) -> int:
    """The audit row a cursor names (None: past the newest)."""
    if cursor is None:
        return _MAX_SEQ
    if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit() and len(cursor) < 20):
        raise ValueError(f"not an audit cursor of this store: {cursor!r:.40}")
    return min(int(cursor), _MAX_SEQ)


class SQLiteKeyStore:
    """Managed keys in a SQLite file at ``path``, in a folder the caller has made private."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            # FULL, not NORMAL (as the usage log has it): a key revoked and then lost to a
            # power cut would work again, so every commit reaches the disk.
            self._db = ProcessConnection(self.path, "FULL")
        except OSError as exc:
            raise KeyStoreError(f"cannot open the key store {str(self.path)!r}: {exc}") from exc
        # The schema is made now, so a bad path fails at startup, and the connection closed
        # again: the process that builds the app forks the workers.
        with self._connection() as conn:
            try:
                conn.executescript(_SCHEMA)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, opened on first use, held under the lock.

        SQLite's and the file system's errors become KeyStoreError here, the one boundary.
        """
        try:
            with self._db.connection() as conn:
                yield conn
        except (sqlite3.Error, OSError) as exc:
            raise KeyStoreError(f"the key store {str(self.path)!r} failed: {exc}") from exc

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction (``begin`` is BEGIN or BEGIN IMMEDIATE), rolled back if it fails."""
        with self._connection() as conn:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def version(self) -> int:
        """The version, bumped by every write; 0 for a new store."""
        with self._connection() as conn:
            return _version_of(conn.execute("SELECT version FROM meta WHERE id = 1").fetchone())

    def load(self) -> tuple[int, list[ManagedKey]]:
        """The version and every key that decodes, read in one transaction (one snapshot)."""
        with self._transaction("BEGIN") as conn:
            version = _version_of(conn.execute("SELECT version FROM meta WHERE id = 1").fetchone())
            rows = conn.execute("SELECT id, name, data FROM keys").fetchall()
        return version, with_unique_names(_decoded(rows))

    def get(self, key_id: str) -> ManagedKey | None:
        """The key with this id, or None."""
        with self._connection() as conn:
            rows = conn.execute("SELECT id, name, data FROM keys WHERE id = ?", (key_id,))
            found = _decoded(rows.fetchall())
        return found[0] if found else None

    def create(self, key: ManagedKey, audit: AuditEntry) -> None:
        """Store a new key; KeyNameTaken if one has its name. See :class:`KeyStore`."""
        data, entry = check_write(key, audit)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            if conn.execute("SELECT 1 FROM keys WHERE name = ?", (key.name,)).fetchone():
                raise KeyNameTaken(f"a managed key is already named {key.name!r}")
            if conn.execute("SELECT 1 FROM keys WHERE id = ?", (key.id,)).fetchone():
                raise ValueError(f"a managed key already has the id {key.id}")
            conn.execute(
                "INSERT INTO keys (id, name, data) VALUES (?, ?, ?)", (key.id, key.name, data)
            )
            self._log(conn, entry)

    def replace(self, key: ManagedKey, audit: AuditEntry) -> bool:
        """Update an existing key (same id and name); False if there is none."""
        data, entry = check_write(key, audit)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            row = conn.execute("SELECT name FROM keys WHERE id = ?", (key.id,)).fetchone()
            if row is None:
                return False  # the transaction commits nothing
            if row[0] != key.name:
                raise ValueError(f"managed key {key.id} is not named {key.name!r}; names are kept")
            conn.execute("UPDATE keys SET data = ? WHERE id = ?", (data, key.id))
            self._log(conn, entry)
        return True

    def delete(self, key_id: str, audit: AuditEntry) -> bool:
        """Remove a key; False if there is none (and no audit entry is appended)."""
        if audit.key_id != key_id:
            raise ValueError(f"the audit entry is for {audit.key_id}, not {key_id}")
        entry = encode_audit(audit)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            row = conn.execute("SELECT name FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                return False
            if row[0] != audit.key_name:
                raise ValueError(f"managed key {key_id} is not named {audit.key_name!r}")
            conn.execute("DELETE FROM keys WHERE id = ?", (key_id,))
            self._log(conn, entry)
        return True

    @staticmethod
    def _log(conn: sqlite3.Connection, entry: str) -> None:
        """Bump the version and append the audit entry, in the caller's transaction."""
        conn.execute(_BUMP)
        conn.execute("INSERT INTO audit (data) VALUES (?)", (entry,))

    def audit_log(
        self, limit: int = 100, before: str | None = None
    ) -> list[tuple[str, AuditEntry]]:
        """Up to ``limit`` entries older than the cursor ``before``, newest first."""
        limit, seq = page_size(limit), _seq(before)
        found: list[tuple[str, AuditEntry]] = []
        with self._connection() as conn:
            # Entries that do not decode are skipped, and more read in their place, so a short
            # page means the log ends there.
            while len(found) < limit:
                rows = conn.execute(
                    "SELECT seq, data FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                    (seq, limit),
                ).fetchall()
                for row_seq, raw in rows:
                    entry = decode_audit(raw)
                    if entry is not None and len(found) < limit:
                        found.append((str(row_seq), entry))
                if len(rows) < limit:
                    break
                seq = rows[-1][0]
        return found

    def close(self) -> None:
        """Close this process's connection; a later call opens a new one."""
        self._db.close()


def _decoded(rows: list[tuple[object, object, object]]) -> list[ManagedKey]:
    """The keys of ``rows`` (id, name, data) whose record decodes and agrees with its row."""
    keys = []
    for row_id, row_name, raw in rows:
        key = decode(raw) if isinstance(raw, str | bytes) else None
        if key is not None and (key.id, key.name) == (row_id, row_name):
            keys.append(key)
    return keys
