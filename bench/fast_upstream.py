"""A minimal, fast OpenAI-compatible upstream for benchmarks: one canned chat completion, or,
for ``/v1/responses``, one canned Response object.

asyncio and hand-written HTTP/1.1 keep-alive, so the upstream costs as little CPU as possible
and the measurement is about the gateway. Run: ``python bench/fast_upstream.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys

BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
).encode()
RESPONSE_OBJECT = json.dumps(
    {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": "gpt-4o-mini",
        "output": [
            {
                "type": "message",
                "id": "msg_bench",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11},
    }
).encode()


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


RESPONSE = _answer(BODY)
RESPONSES_RESPONSE = _answer(RESPONSE_OBJECT)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    data = f"data: {json.dumps(event)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# A chat stream: a head, then STREAM_CHUNKS content events STREAM_GAP seconds apart (chunked
# transfer encoding), the usage, [DONE].
STREAM_CHUNKS = 10
STREAM_GAP = 0.002
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    + _chunk({"role": "assistant", "content": ""})
)
STREAM_CONTENT = _chunk({"content": "Hello"})
_usage = {"prompt_tokens": 9, "completion_tokens": STREAM_CHUNKS, "total_tokens": 9 + STREAM_CHUNKS}
_tail = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": _usage,
    }
)
STREAM_TAIL = (
    _chunk({}, "stop")
    + (lambda d: f"{len(d):x}\r\n".encode() + d + b"\r\n")(f"data: {_tail}\n\n".encode())
    + (lambda d: f"{len(d):x}\r\n".encode() + d + b"\r\n")(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if b'"stream": true' in body or b'"stream":true' in body:
                writer.write(STREAM_HEAD)
                await writer.drain()
                for _ in range(STREAM_CHUNKS):
                    await asyncio.sleep(STREAM_GAP)
                    writer.write(STREAM_CONTENT)
                    await writer.drain()
                writer.write(STREAM_TAIL)
            else:
                writer.write(RESPONSES_RESPONSE if b" /v1/responses " in head[:64] else RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
