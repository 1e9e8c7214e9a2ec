"""A minimal instance of a JSON schema: what a mock model answers under structured output,
or calls a tool with.

Every property of an object is filled, required or not, so a test sees each field arrive;
scalars take the first value their constraints allow. It covers what pydantic, zod and
hand-written strict schemas use (``$ref``/``$defs``, ``anyOf``, enums, ``const``, bounds and
the common string formats), not all of JSON Schema: ``pattern`` is not honoured.

Schemas come from clients: an instance is bounded (:data:`MAX_NODES` values, strings and
lists capped) whatever the schema asks, so nested references or a ``minLength`` of a billion
cannot make a huge one; past the bound, or for a schema that is not one, ValueError.
"""

from __future__ import annotations

import math
from typing import Any

# What one instance may hold: a schema whose references nest ten wide and ten deep would
# otherwise expand to 10^10 values.
MAX_NODES = 2000
MAX_STRING = 1000
MAX_ITEMS = 100

# Strings for the formats pydantic emits (datetime, date, UUID, ...), so the model validates.
FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "duration": "PT1S",
    "email": "x@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def instance_of(schema: Any) -> Any:
    """A small value that validates against ``schema`` (a JSON schema as parsed JSON).

    ``anyOf``/``oneOf`` take their first option that is not ``null``; a recursive schema
    stops at an empty list, a null or an omitted optional property.
    """
    return _Builder(schema).build(schema, ())


class _Builder:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.nodes = 0

    def build(self, schema: Any, refs: tuple[str, ...]) -> Any:
        """An instance of ``schema``; ``refs`` are the references being expanded above it."""
        self.nodes += 1
        if self.nodes > MAX_NODES or len(refs) > MAX_ITEMS:
            raise ValueError(f"the schema asks for more than {MAX_NODES} values")
        if schema is True:
            return "x"  # anything goes
        if not isinstance(schema, dict):
            raise ValueError(f"not a schema: {schema!r}")
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in refs:
                raise ValueError(f"{ref!r} contains itself with no way out")
            return self.build(self.resolve(ref), (*refs, ref))
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.build(self.pick(schema[key], refs), refs)
        if "allOf" in schema:
            parts = [self.build(part, refs) for part in schema["allOf"]]
            if all(isinstance(p, dict) for p in parts):
                return {k: v for p in parts for k, v in p.items()}
            return parts[0]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind == "object":
            return self.object(schema, refs)
        if kind == "array":
            return self.array(schema, refs)
        if kind == "string":
            return self.string(schema)
        if kind in ("integer", "number"):
            return self.number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return "x"  # a schema of annotations only: anything goes

    def resolve(self, ref: str) -> Any:
        """The schema a local reference (``#/$defs/Name``, ``#/definitions/Name``) points at."""
        if not ref.startswith("#"):
            raise ValueError(f"only local references resolve, not {ref!r}")
        node = self.root
        for part in ref[1:].split("/")[1:]:
            if not isinstance(node, dict):
                raise ValueError(f"{ref!r} does not resolve")
            node = node.get(part.replace("~1", "/").replace("~0", "~"))
        return node

    def loops(self, schema: Any, refs: tuple[str, ...]) -> bool:
        """True if ``schema`` is a reference to one being expanded (a recursive model)."""
        return isinstance(schema, dict) and schema.get("$ref") in refs

    def pick(self, options: list[Any], refs: tuple[str, ...]) -> Any:
        usable = [o for o in options if not self.loops(o, refs)] or options
        return next((o for o in usable if o != {"type": "null"}), usable[0])

    def object(self, schema: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        return {
            name: self.build(sub, refs)
            for name, sub in (schema.get("properties") or {}).items()
            if name in required or not self.loops(sub, refs)
        }

    def array(self, schema: dict[str, Any], refs: tuple[str, ...]) -> list[Any]:
        head = [self.build(sub, refs) for sub in schema.get("prefixItems", ())]
        items = schema.get("items", {})
        count = min(max(1, _int(schema.get("minItems"), 0)), MAX_ITEMS) - len(head)
        if count <= 0 or items is False or (self.loops(items, refs) and not schema.get("minItems")):
            return head
        return head + [self.build(items, refs) for _ in range(count)]

    def string(self, schema: dict[str, Any]) -> str:
        text = FORMATS.get(schema.get("format", ""), "x")
        low = min(_int(schema.get("minLength"), 0), MAX_STRING)
        high = schema.get("maxLength")
        if len(text) < low:
            text += "x" * (low - len(text))
        return text[: _int(high, 0)] if high is not None else text

    def number(self, schema: dict[str, Any], integer: bool) -> int | float:
        bounds = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")
        for key in bounds:
            if key in schema and not _finite(schema[key]):
                raise ValueError(f"{key} must be a number, got {schema[key]!r}")
        value: float = 1
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            value = schema["exclusiveMinimum"] + (1 if integer else 0.5)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            value = schema["exclusiveMaximum"] - (1 if integer else 0.5)
        step = schema.get("multipleOf")
        if step:
            value = math.ceil(value / step) * step
        return math.ceil(value) if integer else value


def _int(value: Any, default: int) -> int:
    """A schema's count (``minItems``, ``minLength``), or ``default`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
