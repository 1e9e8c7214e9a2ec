"""JSON in and out: one strict reader for client bodies, one compact encoder for everything sent.

Reading (:func:`parse_body`) refuses what is not JSON or cannot travel safely: ``NaN`` and
``Infinity`` (Python's ``json`` accepts them; RFC 8259 does not, and forwarding them would send
bare tokens upstream), numbers too large to be finite (``1e400``), integers of more than
4,300 digits (Python's int conversion limit), and nesting deeper than ``MAX_DEPTH``. Each is a
:class:`JSONRejected` naming the problem, never a ``RecursionError`` or ``ValueError`` from deep
inside.

Writing (:func:`encode_json`) is compact UTF-8. A lone surrogate (``"\\ud800"``) is valid in a
JSON string but has no UTF-8 form; such a value is written with ASCII escapes instead, which is
the same JSON text the client sent, so nothing is lost and the provider judges it.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

# Deeper nesting is refused. Real requests stay far below (a tool's JSON schema nests a few
# dozen levels at most); the limit keeps every later encode and walk of the body well inside
# Python's recursion limit.
MAX_DEPTH = 100


class JSONRejected(ValueError):
    """A body that is not acceptable JSON; the message says why, for the client."""


def _reject_constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not a JSON value; send numbers as finite decimals")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRejected(f"the number {text[:40]} is too large to be represented")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_body(raw: bytes) -> Any:
    """Parse a client's UTF-8 JSON body strictly; raise :class:`JSONRejected` if it is not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONRejected("it is not valid UTF-8") from exc
    try:
        value = _DECODER.decode(text)
    except JSONRejected:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRejected(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise JSONRejected(f"it is nested more than {MAX_DEPTH} levels deep") from exc
    except ValueError as exc:  # int() refusing a number of more than 4,300 digits
        raise JSONRejected("a number in it has too many digits") from exc
    # A body with fewer brackets than the limit cannot nest that deep: skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise JSONRejected(f"it is nested more than {MAX_DEPTH} levels deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Tell whether containers nest more than ``limit`` levels (iteratively: no recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def compact_json(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text with characters as themselves (lone surrogates stay in the str)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def encode_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON; a value holding a lone surrogate is written with ASCII escapes."""
    try:
        return compact_json(value, sort_keys=sort_keys).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(
            value, ensure_ascii=True, separators=(",", ":"), sort_keys=sort_keys
        ).encode("ascii")


def is_count(value: Any) -> TypeGuard[int]:
    """Tell whether a JSON value is a whole number (``true`` is not one, as JSON has it)."""
    return isinstance(value, int) and not isinstance(value, bool)
