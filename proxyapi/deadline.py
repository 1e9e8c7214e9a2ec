"""The end-to-end budget of one request: every retry, fallback and wait fits inside it."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock by which the request must be answered."""

    timeout: float
    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """Return the deadline ``seconds`` from now."""
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        """Return the seconds left (negative once passed)."""
        return self.expires_at - time.monotonic()

    def expired(self) -> bool:
        """Tell whether the deadline has passed."""
        return self.remaining() <= 0
