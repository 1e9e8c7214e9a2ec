"""Tool calling with the openai SDK: the model asks for a tool, we answer it, it replies."""

from __future__ import annotations

import json

from _env import KEY, URL
from openai import OpenAI

client = OpenAI(base_url=f"{URL}/v1", api_key=KEY)
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]

first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
call = first.choices[0].message.tool_calls[0]
arguments = json.loads(call.function.arguments)
print("tool call:", call.function.name, arguments)

messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "18°C and sunny"})
final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
print("answer:", final.choices[0].message.content)
