"""Tokens an answer used, in one set of units whatever the provider's dialect.

Providers count differently: OpenAI's ``prompt_tokens`` (and the Responses API's
``input_tokens``) include the cached tokens, reported again inside as ``cached_tokens``;
Anthropic's ``input_tokens`` are only the uncached ones, with cache reads and writes beside
them, and writes split by cache lifetime (5 minutes, 1 hour). :class:`Usage` holds the sum of
the input in ``prompt_tokens`` (cached included, OpenAI's convention) and names each part, so
every answer is counted, priced and capped the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxyapi.jsonio import is_count


@dataclass(frozen=True)
class Usage:
    """An answer's tokens.

    ``prompt_tokens``: every input token, cached ones included; ``completion_tokens``: every
    output token, reasoning included; ``cache_read_tokens``: input read from the provider's
    prompt cache; ``cache_write_tokens``: input written to it for 5 minutes (or a lifetime the
    provider did not say), ``cache_write_1h_tokens`` for an hour; ``reasoning_tokens``: output
    spent reasoning (inside ``completion_tokens``); ``model``: the model the provider billed,
    when it said.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    # Not part of equality: two answers of the same counts used the same tokens.
    model: str | None = field(default=None, compare=False)

    @classmethod
    def from_openai(cls, data: Any, model: str | None = None) -> Usage | None:
        """Read a Chat Completions (or legacy completions, embeddings) ``usage`` object; None
        if it is not one. Some compatible hosts (OpenRouter) add ``cache_write_tokens``."""
        return cls._openai_shaped(data, model, "prompt_tokens", "completion_tokens")

    @classmethod
    def from_responses(cls, data: Any, model: str | None = None) -> Usage | None:
        """Read a Responses API ``usage`` object; None if it is not one."""
        return cls._openai_shaped(data, model, "input_tokens", "output_tokens")

    @classmethod
    def _openai_shaped(
        cls, data: Any, model: str | None, inputs: str, outputs: str
    ) -> Usage | None:
        """OpenAI's two usage objects differ only in names: ``<inputs>`` with cached tokens in
        ``<inputs>_details``, ``<outputs>`` with reasoning in ``<outputs>_details``."""
        if not isinstance(data, Mapping):
            return None
        prompt, completion = _count(data, inputs), _count(data, outputs)
        details = _details(data, f"{inputs}_details")
        return cls(
            prompt,
            completion,
            _count(data, "total_tokens") or prompt + completion,
            cache_read_tokens=_count(details, "cached_tokens"),
            cache_write_tokens=_count(details, "cache_write_tokens"),
            reasoning_tokens=_count(_details(data, f"{outputs}_details"), "reasoning_tokens"),
            model=model,
        )

    @classmethod
    def from_anthropic(cls, data: Any, model: str | None = None) -> Usage | None:
        """Read an Anthropic ``usage`` object; None if it is not one.

        Cache writes come split by lifetime in ``cache_creation`` when Anthropic says; else
        ``cache_creation_input_tokens`` are all 5-minute writes (its default lifetime).
        """
        if not isinstance(data, Mapping):
            return None
        read = _count(data, "cache_read_input_tokens")
        written = _count(data, "cache_creation_input_tokens")
        split = _details(data, "cache_creation")
        hour = _count(split, "ephemeral_1h_input_tokens")
        prompt = _count(data, "input_tokens") + read + written
        completion = _count(data, "output_tokens")
        return cls(
            prompt,
            completion,
            prompt + completion,
            cache_read_tokens=read,
            cache_write_tokens=max(0, written - hour),
            cache_write_1h_tokens=min(hour, written),
            model=model,
        )

    def with_model(self, model: str | None) -> Usage:
        """The same counts, billed to ``model`` (when the provider named one)."""
        if not model or model == self.model:
            return self
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.reasoning_tokens,
            model,
        )


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if is_count(value) and value > 0 else 0


def _details(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}
