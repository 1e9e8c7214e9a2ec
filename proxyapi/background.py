"""Background threads that run once in each worker process."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcessThread:
    """A daemon thread started at most once per process (and again in a forked child)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self.target = target
        self.name = name
        self._pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the thread in this process unless it already runs here; cheap to call often."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self.target, name=self.name, daemon=True).start()
