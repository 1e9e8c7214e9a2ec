"""Ingress dialects: what clients speak (OpenAI's Chat Completions family, Anthropic's Messages)
and how each validates a request, frames its errors and stream events, and lists models."""
