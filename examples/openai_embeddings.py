"""Embeddings with the openai SDK, and how alike two texts are."""

from __future__ import annotations

import math

from _env import KEY, URL
from openai import OpenAI

client = OpenAI(base_url=f"{URL}/v1", api_key=KEY)
result = client.embeddings.create(
    model="text-embedding-3-small", input=["a gateway for LLM APIs", "a proxy for models"]
)
a, b = (item.embedding for item in result.data)
cosine = sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))
print(f"{len(result.data)} vectors of {len(a)} dimensions; cosine similarity {cosine:.3f}")
