"""Ids of the objects a Responses answer holds, in OpenAI's shape."""

from __future__ import annotations

import secrets

# OpenAI's ids are a prefix and 48 hex digits (resp_, msg_, fc_, ctc_, rs_).
_ID_BYTES = 24


def new_id(prefix: str) -> str:
    """A fresh random id such as ``resp_`` and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(_ID_BYTES)}"
