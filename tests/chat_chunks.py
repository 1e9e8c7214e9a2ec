"""OpenAI chat stream chunks for the translators' unit tests, each checked against the schema."""

from __future__ import annotations

import json
from typing import Any

from tests.schemas import assert_valid


class ChatChunks:
    """Makes the chunks of one upstream's chat stream (its model, chunk id and time)."""

    def __init__(self, model: str, chat_id: str, created: int) -> None:
        self.model = model
        self.chat_id = chat_id
        self.created = created

    def chunk(
        self,
        delta: dict[str, Any] | None = None,
        finish_reason: str | None = None,
        *,
        usage: dict[str, Any] | None = None,
        choices: bool = True,
    ) -> dict[str, Any]:
        """One chat.completion.chunk (as streamed with include_usage), checked by schema."""
        body: dict[str, Any] = {
            "id": self.chat_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [
                {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
            ]
            if choices
            else [],
            "usage": usage,
        }
        # The spec types usage as nullable the OpenAPI 3.0 way, which its JSON Schema reading
        # does not honour: check the chunk without the null.
        assert_valid(
            "CreateChatCompletionStreamResponse",
            {k: v for k, v in body.items() if not (k == "usage" and v is None)},
        )
        return body

    def role_chunk(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def finish_chunk(self, reason: str) -> dict[str, Any]:
        return self.chunk({}, reason)

    def usage_chunk(
        self, prompt: int = 25, completion: int = 9, cached: int | None = None
    ) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return self.chunk(choices=False, usage=usage)

    def tools_chunk(self, *pieces: dict[str, Any]) -> dict[str, Any]:
        return self.chunk({"tool_calls": list(pieces)})


def off_spec(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A chunk as some OpenAI-compatible upstreams send it, outside OpenAI's schema."""
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def piece(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    """A tool call piece of a delta, as OpenAI streams it."""
    tool: dict[str, Any] = {"index": index}
    function: dict[str, Any] = {}
    if call_id is not None:
        tool["id"], tool["type"] = call_id, "function"
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    tool["function"] = function
    return tool


def stream_of(*chunks: dict[str, Any], done: bool = True, newline: str = "\n") -> bytes:
    """The SSE bytes of ``chunks`` (and ``[DONE]``), with the line ends a host uses."""
    raw = "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks)
    if done:
        raw += "data: [DONE]\n\n"
    return raw.replace("\n", newline).encode("utf-8")
