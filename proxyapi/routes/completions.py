"""The proxied OpenAI endpoints: chat completions, legacy completions and embeddings."""

from __future__ import annotations

from flask import Blueprint, Response

from proxyapi.dialects.chat import OPENAI_DIALECT
from proxyapi.providers.base import Operation
from proxyapi.routes.pipeline import proxy

bp = Blueprint("completions", __name__, url_prefix="/v1")


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """OpenAI chat completions, JSON or SSE."""
    return proxy(Operation.CHAT, OPENAI_DIALECT)


@bp.post("/completions")
def completions() -> Response:
    """OpenAI legacy text completions, JSON or SSE."""
    return proxy(Operation.COMPLETIONS, OPENAI_DIALECT)


@bp.post("/embeddings")
def embeddings() -> Response:
    """OpenAI embeddings."""
    return proxy(Operation.EMBEDDINGS, OPENAI_DIALECT)
