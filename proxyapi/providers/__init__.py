"""Provider dialects, one module each, chosen by a provider's ``type``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxyapi.providers.anthropic import AnthropicAdapter
from proxyapi.providers.azure import AzureAdapter
from proxyapi.providers.base import Adapter
from proxyapi.providers.openai import OpenAIAdapter

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

# One per type of proxyapi.config.model.PROVIDER_TYPE_OPTIONS.
ADAPTERS: dict[str, type[Adapter]] = {
    "openai": OpenAIAdapter,
    "azure": AzureAdapter,
    "anthropic": AnthropicAdapter,
}


def adapter_for(provider: ProviderConfig) -> Adapter:
    """Return the adapter for a provider's ``type``."""
    return ADAPTERS[provider.type](provider)
