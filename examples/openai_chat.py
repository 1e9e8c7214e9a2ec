"""Chat with the official openai SDK: one answer, then the same question streamed."""

from __future__ import annotations

from _env import KEY, URL
from openai import OpenAI

client = OpenAI(base_url=f"{URL}/v1", api_key=KEY)
question = [{"role": "user", "content": "What is a WSGI gateway?"}]

reply = client.chat.completions.create(model="gpt-4o-mini", messages=question)
print("answer:", reply.choices[0].message.content)
print("usage:", reply.usage.total_tokens if reply.usage else None, "tokens")

print("streamed: ", end="")
for chunk in client.chat.completions.create(
    model="gpt-4o-mini",
    messages=question,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
