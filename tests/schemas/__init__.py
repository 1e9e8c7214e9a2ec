"""Validate bodies against the public OpenAI OpenAPI component schemas (spec 2.3.0).

``openai-schemas.json`` holds the component schemas of openai/openai-openapi ``openapi.json``
that chat, completions, embeddings, models and errors use, and the Responses API's: every
schema ``Response``, ``ResponseStreamEvent`` and ``CreateResponse`` refer to, copied unchanged.
The spec disagrees with the live API in a few places, tolerated here and nowhere else:
``refusal`` and ``logprobs`` listed as required (the API sends them as null), a stream
chunk's ``finish_reason`` typed as a non-null string (every chunk but the last carries null),
and a failed response's ``error.code`` missing ``context_length_exceeded`` and
``insufficient_quota``, which the API sends in ``response.failed`` and Codex acts on.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

_PATH = Path(__file__).with_name("openai-schemas.json")


@cache
def _document() -> dict[str, Any]:
    doc = json.loads(_PATH.read_text())
    schemas = doc["components"]["schemas"]
    # Tolerances listed in the module docstring.
    for name in ("ChatCompletionResponseMessage",):
        req = schemas[name].get("required", [])
        schemas[name]["required"] = [r for r in req if r != "refusal"]
    _drop_required(schemas, "logprobs")
    schemas["ResponseErrorCode"]["enum"] += ["context_length_exceeded", "insufficient_quota"]
    chunk_choice = schemas["CreateChatCompletionStreamResponse"]["properties"]["choices"]["items"]
    chunk_choice["properties"]["finish_reason"] = {
        "anyOf": [copy.deepcopy(chunk_choice["properties"]["finish_reason"]), {"type": "null"}]
    }
    return doc


def _drop_required(node: Any, field: str) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("required"), list) and field in node["required"]:
            node["required"] = [r for r in node["required"] if r != field]
        for value in node.values():
            _drop_required(value, field)
    elif isinstance(node, list):
        for value in node:
            _drop_required(value, field)


@cache
def _validator(name: str) -> Draft202012Validator:
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", **_document()}
    registry: Registry = Registry().with_resource("urn:openai", Resource.from_contents(doc))
    return Draft202012Validator(
        {"$ref": f"urn:openai#/components/schemas/{name}"}, registry=registry
    )


def _strip_null_optional(node: Any) -> Any:
    """Drop ``refusal: null`` and ``logprobs: null``, which the spec wrongly requires."""
    if isinstance(node, dict):
        return {
            k: _strip_null_optional(v)
            for k, v in node.items()
            if not (k in ("refusal", "logprobs") and v is None)
        }
    if isinstance(node, list):
        return [_strip_null_optional(v) for v in node]
    return node


def assert_valid(name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError unless ``instance`` matches schema ``name``."""
    _validator(name).validate(_strip_null_optional(instance))
