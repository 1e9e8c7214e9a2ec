"""A SQLite file shared by the worker processes of one host (the usage log, the managed keys).

The file is created private (0600) before SQLite opens it (its -wal and -shm files take its
mode), refusing a symbolic link planted in its place. Each process opens its own connection on
first use: a connection must never cross a fork (SQLite's locks are per process, so a copy
would write without them), and gunicorn forks its workers after the app, and its stores, are
built. A lock guards the connection, which a process's threads share.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A write waits this long for another process's to finish. Each is one small transaction (a
# few ms), so a wait this long means a stuck disk; the write then fails.
BUSY_TIMEOUT = 5.0

# Connections a forked child inherited. Closing one there could checkpoint or delete the
# parent's WAL file; letting it be garbage-collected would close it too. It is kept, unused.
_INHERITED: list[sqlite3.Connection] = []


class ProcessConnection:
    """This process's connection to the SQLite file at ``path`` (WAL mode).

    ``synchronous`` is SQLite's setting: ``NORMAL`` syncs at checkpoints (a power cut loses
    at most the last moments), ``FULL`` every commit.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(self.path, flags, 0o600))
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        method = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (m := method()) is not None and m())

    def _after_fork(self) -> None:
        # The parent's threads are gone: a lock one of them held would never be released.
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: the stores begin their transactions explicitly.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, opened on first use, held under the lock."""
        with self._lock:
            if self._conn is not None and self._pid != os.getpid():
                _INHERITED.append(self._conn)
                self._conn = None
            if self._conn is None:
                self._conn = self._open()
                self._pid = os.getpid()
            yield self._conn

    def close(self) -> None:
        """Close this process's connection; a later use opens a new one."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                self._conn = None
