"""OpenAI's Responses API (``/v1/responses``), as Codex, the Agents SDK, the Vercel AI SDK and
pydantic-ai speak it.

Errors are OpenAI's; a stream ends with ``response.completed``, ``response.incomplete`` or
``response.failed`` whatever happens (Codex treats a stream without one as broken). Follow-ups
(``previous_response_id``) use the gateway's store (:mod:`proxyapi.response_store`): a
response a provider made and keeps pins its follow-up to that provider; one the gateway made by
translation is replaced by the conversation it stands for, which any provider can take.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flask import current_app

from proxyapi import response_store
from proxyapi.dialects.base import Dialect, Keeper
from proxyapi.dialects.shapes import OPENAI
from proxyapi.errors import InvalidRequest, ProxyAPIError
from proxyapi.jsonio import is_count
from proxyapi.providers.base import ClientBody, Operation
from proxyapi.providers.sse import sse_event
from proxyapi.response_store import ResponseStore, input_items
from proxyapi.translate.responses_chat import failed_response, new_id, replay_response_events
from proxyapi.validation import check_identifier, check_model_name, json_type

if TYPE_CHECKING:
    from proxyapi.routing import Target

log = logging.getLogger(__name__)

# Fields that must be of one JSON type when present (null counts as absent).
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "instructions": ((str,), "a string"),
    "stream": ((bool,), "a boolean"),
    "store": ((bool,), "a boolean"),
    "tools": ((list,), "an array of tools"),
    "include": ((list,), "an array of strings"),
    "metadata": ((dict,), "an object"),
    "tool_choice": ((str, dict), "a string or an object"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "text": ((dict,), "an object"),
    "reasoning": ((dict,), "an object"),
}


def _store() -> ResponseStore:
    store: ResponseStore = current_app.extensions[response_store.EXTENSION]
    return store


class ResponsesDialect(Dialect):
    """The OpenAI Responses API."""

    name = OPENAI

    def validate(self, op: Operation, body: Mapping[str, Any]) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(
                f"model: required, a non-empty string; got {json_type(model)}.", param="model"
            )
        check_model_name(model)
        value = body.get("input")
        previous = body.get("previous_response_id")
        if value is None and previous is None:
            raise InvalidRequest("input: required, a string or an array of items.", param="input")
        if value is not None and not isinstance(value, (str, list)):
            raise InvalidRequest(
                f"input: must be a string or an array of items, got {json_type(value)}.",
                param="input",
            )
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise InvalidRequest(
                        f"input[{i}]: must be an object, got {json_type(item)}.", param="input"
                    )
        if previous is not None:
            if not isinstance(previous, str) or not previous:
                raise InvalidRequest(
                    f"previous_response_id: must be a response id, got {json_type(previous)}.",
                    param="previous_response_id",
                )
            check_identifier(previous, "previous_response_id")
        for name, (types, what) in _TYPES.items():
            field = body.get(name)
            if field is not None and not isinstance(field, types):
                raise InvalidRequest(f"{name}: must be {what}, got {json_type(field)}.", param=name)
        limit = body.get("max_output_tokens")
        if limit is not None and (not is_count(limit) or limit < 1):
            raise InvalidRequest(
                f"max_output_tokens: must be a whole number of at least 1, got {json_type(limit)}.",
                param="max_output_tokens",
            )

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
        # Only for a stream whose translator did not frame its own end (which carries its id).
        response = failed_response(new_id("resp"), int(time.time()), {}, exc, secrets)
        return sse_event(
            {"type": "response.failed", "sequence_number": 0, "response": response},
            "response.failed",
        )

    def replay(self, answer: bytes, body: Mapping[str, Any]) -> list[bytes] | None:
        try:
            return replay_response_events(json.loads(answer))
        except ValueError as exc:
            log.info("cached answer not replayed: %s", exc)
            return None

    def cacheable(self, body: Mapping[str, Any]) -> bool:
        # A stored response has an id of its own: only a request that stores nothing may be
        # answered with an earlier response.
        return body.get("store") is False

    def prepare(
        self, body: ClientBody, owner: str, targets: list[Target]
    ) -> tuple[ClientBody, list[Target]]:
        previous = body.get("previous_response_id")
        if previous is None:
            return body, targets
        stored = _store().lookup(owner, previous)
        if stored is None:
            # Not the gateway's: only a provider that keeps its own responses may know it.
            native = [t for t in targets if t.provider.responses_api]
            if not native:
                raise _not_found(previous)
            return body, native
        if stored.provider is not None:
            pinned = [t for t in targets if t.provider.name == stored.provider]
            if not pinned:
                raise InvalidRequest(
                    f"Previous response '{previous}' was made by provider '{stored.provider}', "
                    f"which does not serve model '{body['model']}'; a follow-up goes to the "
                    "provider that keeps the conversation.",
                    param="previous_response_id",
                )
            return body, pinned
        data = {k: v for k, v in body.items() if k != "previous_response_id"}
        data["input"] = [*(stored.items or []), *input_items(body.get("input"))]
        return body.revised(data, previous_response_id=previous), targets

    def keeper(self, body: Mapping[str, Any], owner: str) -> Keeper | None:
        if body.get("store") is False:
            return None
        store = _store()
        providers = {p.name: p for p in current_app.extensions["proxyapi.config"].providers}
        history = input_items(body.get("input"))

        def keep(provider: str, response: Mapping[str, Any]) -> None:
            response_id = response.get("id")
            if not isinstance(response_id, str):
                return
            config = providers.get(provider)
            if config is not None and config.responses_api:
                store.pin(owner, response_id, provider)
                return
            output = response.get("output")
            store.keep(owner, response, [*history, *_as_input(output)])

        return keep


def _as_input(output: Any) -> list[dict[str, Any]]:
    """A translated answer's output items as the next turn's input: without their ids (which
    no provider knows) and without reasoning text (no provider takes it back without the
    encrypted form only OpenAI makes)."""
    if not isinstance(output, list):
        return []
    return [
        {k: v for k, v in item.items() if k != "id"}
        for item in output
        if isinstance(item, dict) and item.get("type") != "reasoning"
    ]


def _not_found(response_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        error_code="previous_response_not_found",
    )


RESPONSES_DIALECT = ResponsesDialect()
