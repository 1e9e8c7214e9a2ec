"""Times as the HTTP API shows and takes them: ISO 8601, in UTC when no offset is given."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC with a ``Z``: ``2026-12-01T10:00:00Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 date or time (``Z`` or an offset; UTC without one), or None if it is not
    one."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
