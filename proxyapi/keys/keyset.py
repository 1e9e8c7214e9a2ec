"""Each worker's copy of the managed keys, kept fresh off the request path.

Authentication never waits for the store: a request looks its key up in this process's copy (a
dict of digests). A daemon thread, started on the first lookup in each process (gunicorn forks
workers after the app is built), reads the store's version every ``refresh_interval`` (one
small read) and the whole key set only when the version moved, so a key created, changed or
revoked on any host reaches every worker within about ``refresh_interval``. The worker that
made a change reloads at once.

When the store cannot be read the copy is kept (fail-static): valid keys go on working, and
``/health/ready`` says ``degraded``. Past ``max_stale`` seconds without a good read, managed keys
get 503 ``key_store_unavailable`` (a revocation may have been missed), never 401; the config's
keys are not in the store and always work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxyapi.background import PerProcessThread
from proxyapi.config.checks import ConfigError
from proxyapi.config.model import KeyConfig
from proxyapi.config.parse import parse_managed_key
from proxyapi.keys.records import KeyStore, ManagedKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A managed key as authentication sees it: its record, its config, and whether the
    digest that found it is the secret's previous one (kept for a rotation's grace)."""

    record: ManagedKey
    config: KeyConfig
    previous: bool = False


class KeySet:
    """The managed keys of the store, by digest, in this process."""

    def __init__(
        self,
        store: KeyStore,
        refresh_interval: float,
        max_stale: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        self.max_stale = max_stale
        self.clock = clock
        self._by_digest: dict[str, Entry] = {}
        self._by_name: dict[str, Entry] = {}
        self._version: int | None = None
        self._loaded_at = float("-inf")  # the last good read of the store
        self._failing: str | None = None  # why the last read failed, while it does
        self._lock = threading.Lock()
        self._thread = PerProcessThread(self._run, "proxyapi-keys")

    # --- what authentication asks ---------------------------------------------------------

    def find(self, digest: str) -> Entry | None:
        """The key whose secret (or previous secret) has ``digest``; loads the set first in a
        process that has none yet (once)."""
        self.ensure()
        return self._by_digest.get(digest)

    def ensure(self) -> None:
        """Keep this process's copy fresh from now on, reading it first if it has none."""
        self._thread.ensure_started()
        if self._version is None:
            self.refresh()

    def by_name(self, name: str) -> Entry | None:
        return self._by_name.get(name)

    def configs(self) -> list[KeyConfig]:
        """Every managed key's settings (as of the last read)."""
        return [entry.config for entry in self._by_name.values()]

    @property
    def count(self) -> int:
        """How many managed keys there are (as of the last read)."""
        return len(self._by_name)

    @property
    def usable(self) -> bool:
        """Whether this copy may be trusted: read once, and not older than ``max_stale``."""
        return self._version is not None and self.clock() - self._loaded_at <= self.max_stale

    @property
    def degraded(self) -> str | None:
        """Why the store cannot be read right now, or None."""
        return self._failing

    def status(self) -> dict[str, object]:
        """What /health/ready shows."""
        age = self.clock() - self._loaded_at if self._version is not None else None
        return {
            "keys": len(self._by_name),
            "version": self._version,
            "seconds_since_read": None if age is None else round(age, 1),
            "error": self._failing,
        }

    # --- keeping it fresh -----------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Read the store's version, and the keys when it moved (or ``force``); False when the
        store could not be read (the copy is kept)."""
        with self._lock:
            try:
                unchanged = not force and self._version is not None
                if unchanged and self.store.version() == self._version:
                    self._ok()
                    return True
                version, records = self.store.load()
            except Exception as exc:  # the store's errors, whatever the backend: fail static
                self._fail(exc)
                return False
            self._install(version, records)
            self._ok()
            return True

    def _install(self, version: int, records: list[ManagedKey]) -> None:
        by_digest: dict[str, Entry] = {}
        by_name: dict[str, Entry] = {}
        for record in records:
            try:
                config = parse_managed_key(record.settings, record.name, record.digest)
            except ConfigError as exc:
                # Written by someone else, or by a newer version: skipped, not trusted.
                log.warning("managed key %s skipped: %s", record.id, exc)
                continue
            entry = Entry(record, config)
            by_digest[record.digest] = entry
            by_name[record.name] = entry
            if record.previous_digest and record.previous_until:
                by_digest.setdefault(record.previous_digest, Entry(record, config, True))
        # Swapped whole: a lookup sees the old set or the new one, never half of each.
        self._by_digest, self._by_name, self._version = by_digest, by_name, version

    def _ok(self) -> None:
        self._loaded_at = self.clock()
        if self._failing is not None:
            log.warning("managed keys: the store answers again")
            self._failing = None

    def _fail(self, exc: Exception) -> None:
        reason = f"{exc.__class__.__name__}: {exc}"
        if self._failing is None:
            log.warning(
                "managed keys: the store cannot be read, serving the last good set: %s", reason
            )
        self._failing = reason

    def _run(self) -> None:
        while True:
            time.sleep(self.refresh_interval)
            self.refresh()
