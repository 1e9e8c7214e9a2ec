"""Read a request's JSON body and check the fields the gateway itself relies on.

Only what routing and relaying need is checked here (the model, the stream flags and the
presence and type of the main input); every other parameter passes through untouched for the
provider to judge, so new OpenAI parameters work without a gateway release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from proxyapi.errors import InvalidRequest
from proxyapi.jsonio import JSONRejected, parse_body
from proxyapi.providers.base import Operation

# Longest model name accepted. Real ids are well under 100 characters (OpenRouter's
# "provider/model:variant" included); the bound keeps log lines and error messages small.
MAX_MODEL_LENGTH = 256

# The main input of each operation and the JSON types it may have.
_INPUT_FIELD: dict[Operation, tuple[str, tuple[type, ...], str]] = {
    Operation.CHAT: ("messages", (list,), "an array of message objects"),
    Operation.COMPLETIONS: ("prompt", (str, list), "a string or an array"),
    Operation.EMBEDDINGS: ("input", (str, list), "a string or an array"),
}


def read_json_object(raw: bytes | None = None) -> dict[str, Any]:
    """Parse the body (``raw``, else the request's) as a JSON object, whatever the
    Content-Type (curl -d sends a form type)."""
    if raw is None:
        raw = request.get_data(cache=False)
    if not raw.strip():
        raise InvalidRequest(
            "The request body is empty; send a JSON object, e.g. "
            '{"model": "...", "messages": [{"role": "user", "content": "Hi"}]}.'
        )
    try:
        body = parse_body(raw)
    except JSONRejected as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, got a JSON {json_type(body)}."
        )
    return body


def validate(op: Operation, body: Mapping[str, Any]) -> None:
    """Check the fields the gateway uses; raise InvalidRequest naming the bad one."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            f"'model' must be a non-empty string, got {json_type(model)}.", param="model"
        )
    check_model_name(model)
    field, types, described = _INPUT_FIELD[op]
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{field}'.", param=field)
    if not isinstance(value, types) or (isinstance(value, list) and not value):
        raise InvalidRequest(
            f"'{field}' must be {described} and not empty, got {json_type(value)}.", param=field
        )
    if op is Operation.CHAT and not all(isinstance(m, dict) for m in body["messages"]):
        raise InvalidRequest("Each item of 'messages' must be an object.", param="messages")
    if op is Operation.EMBEDDINGS:
        if "stream" in body:
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
        return
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(
            f"'stream' must be a boolean, got {json_type(stream)}.", param="stream"
        )
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest(
                f"'stream_options' must be an object, got {json_type(options)}.",
                param="stream_options",
            )
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
            )


def check_model_name(model: str) -> None:
    """Refuse a model name that is too long or holds characters no model id has."""
    check_identifier(model, "model")


def check_identifier(value: str, param: str) -> None:
    """Refuse an id (a model name, a response id) that is too long or holds characters no id
    has.

    Control characters, lone surrogates and other unprintable characters are refused here, so
    an id can go into a log line, a URL, a store key or an error message as it is.
    """
    if len(value) > MAX_MODEL_LENGTH:
        raise InvalidRequest(
            f"'{param}' must be at most {MAX_MODEL_LENGTH} characters, got {len(value)}.",
            param=param,
        )
    if not value.isprintable():
        raise InvalidRequest(
            f"'{param}' must not contain control characters or other unprintable characters.",
            param=param,
        )


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
