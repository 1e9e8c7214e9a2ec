"""The Responses API with the openai SDK (what Codex and the Agents SDK speak), with a
follow-up that refers to the first answer by its id."""

from __future__ import annotations

from _env import KEY, URL
from openai import OpenAI

client = OpenAI(base_url=f"{URL}/v1", api_key=KEY)
first = client.responses.create(model="gpt-4o-mini", input="Name a colour")
print("answer:", first.output_text)
second = client.responses.create(
    model="gpt-4o-mini", input="And another one", previous_response_id=first.id
)
print("follow-up:", second.output_text)
