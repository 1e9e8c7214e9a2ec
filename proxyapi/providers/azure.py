"""The Azure OpenAI dialect: the OpenAI API under per-deployment URLs and an ``api-key``.

Calls go to ``{base_url}/openai/deployments/{deployment}/{operation}?api-version=...`` where the
deployment is the model's entry in the provider's ``deployments`` (the model name itself by
default). Answers, errors and Azure's content-filter results are OpenAI-shaped already and pass
through unchanged (``prompt_filter_results`` and ``content_filter_results`` included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from proxyapi.config.checks import is_deployment_name
from proxyapi.errors import InvalidRequest
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import Operation, UpstreamRequest
from proxyapi.providers.openai import PATHS, RESPONSE_METHODS, OpenAIAdapter


class AzureAdapter(OpenAIAdapter):
    """Adapter for ``type: azure`` providers."""

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self.provider.api_key} if self.provider.api_key else {}

    def _deployment(self, model: str) -> str:
        deployment = self.provider.deployments.get(model, model)
        if not is_deployment_name(deployment):
            raise InvalidRequest(
                f"'{model}' cannot be an Azure deployment name (letters, digits, '_', '-' and "
                "'.', at most 64, not starting with '.').",
                param="model",
            )
        return deployment

    def responses_url(self) -> str:
        # Azure's v1 API (no api-version), where the body's model names the deployment.
        return f"{self.provider.base_url}/openai/v1/responses"

    def responses_model(self, model: str) -> str:
        return self._deployment(model)

    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        if op in RESPONSE_METHODS or op is Operation.RESPONSES:
            return super().build(op, body, model, stream)
        body = self._translate(op, body, stream)
        deployment = self._deployment(model)
        # The deployment decides the model; the field is kept as the client sent it, resolved.
        payload = {**body, "model": model}
        return UpstreamRequest(
            method="POST",
            url=(
                f"{self.provider.base_url}/openai/deployments/{quote(deployment, safe='')}/"
                f"{PATHS[op]}?api-version={quote(self.provider.api_version, safe='')}"
            ),
            headers=self._headers(stream),
            body=encode_json(payload),
            stream=stream,
        )

    def build_list_models(self) -> UpstreamRequest | None:
        # Azure lists base models, not the deployments a client can call: the configured
        # models are the list.
        return None
