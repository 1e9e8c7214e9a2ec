"""The Messages API with the official anthropic SDK (what Claude Code speaks): one answer and
a stream. The gateway passes it to Anthropic as it is, or translates it for another host."""

from __future__ import annotations

import anthropic
from _env import KEY, URL

# No /v1: the SDK adds /v1/messages itself.
client = anthropic.Anthropic(base_url=URL, api_key=KEY)
question = [{"role": "user", "content": "Say hello"}]

message = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=question)
print("answer:", message.content[0].text)
print("usage:", message.usage.input_tokens, "in,", message.usage.output_tokens, "out")

print("streamed: ", end="")
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=question) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()
