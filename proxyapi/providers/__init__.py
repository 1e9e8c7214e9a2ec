"""Provider dialects, one module each, chosen by a provider's ``type``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxyapi.providers.anthropic import AnthropicAdapter
from proxyapi.providers.azure import AzureAdapter
from proxyapi.providers.base import Adapter, Operation
from proxyapi.providers.openai import OpenAIAdapter
from proxyapi.providers.responses_over_chat import ResponsesOverChat

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

# One per type of proxyapi.config.model.PROVIDER_TYPE_OPTIONS.
ADAPTERS: dict[str, type[Adapter]] = {
    "openai": OpenAIAdapter,
    "azure": AzureAdapter,
    "anthropic": AnthropicAdapter,
    # A mock provider speaks OpenAI's dialect; its transport makes the answers up.
    "mock": OpenAIAdapter,
}


def adapter_for(provider: ProviderConfig) -> Adapter:
    """Return the adapter for a provider's ``type``."""
    return ADAPTERS[provider.type](provider)


def serving(adapter: Adapter, op: Operation) -> Adapter:
    """The adapter that serves ``op``: ``adapter``, or, for a Responses request to a provider
    without that API, the bridge that sends it as a chat call."""
    if op is Operation.RESPONSES and not adapter.provider.responses_api:
        return ResponsesOverChat(adapter)
    return adapter
