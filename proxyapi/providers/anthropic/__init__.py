"""The Anthropic provider type: Messages clients pass through, chat clients are translated."""

from __future__ import annotations

from proxyapi.providers.anthropic.adapter import AnthropicAdapter
from proxyapi.providers.anthropic.chat_reply import ERROR_TYPES, FINISH_REASONS, openai_usage
from proxyapi.providers.anthropic.chat_stream import AnthropicStreamTranslator
from proxyapi.providers.anthropic.passthrough import MessagesPassThrough

__all__ = [
    "ERROR_TYPES",
    "FINISH_REASONS",
    "AnthropicAdapter",
    "AnthropicStreamTranslator",
    "MessagesPassThrough",
    "openai_usage",
]
