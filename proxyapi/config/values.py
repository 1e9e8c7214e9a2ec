"""What some config values mean: a key's digest, a model glob. Kept with the config, so the
pieces that use them (auth, routing) import the config and never the other way round."""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_GLOB_CHARS = frozenset("*?[")


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest under which a client key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Tell whether ``value`` looks like a lowercase SHA-256 hex digest."""
    return bool(_HEX64.match(value))


def is_glob(pattern: str) -> bool:
    """Tell whether a ``models`` entry is a glob rather than a model name."""
    return not _GLOB_CHARS.isdisjoint(pattern)


def is_openai_api(base_url: str) -> bool:
    """Tell whether a provider URL is OpenAI's own API (by host name, not by substring)."""
    return urlsplit(base_url).hostname == "api.openai.com"


def lists_model(patterns: tuple[str, ...], model: str) -> bool:
    """Tell whether a ``models`` list names ``model`` exactly or by a glob."""
    return model in patterns or any(is_glob(p) and fnmatchcase(model, p) for p in patterns)
