#!/usr/bin/env bash
# The gateway with plain curl: chat, a stream, embeddings, models, health.
set -euo pipefail
URL="${PROXYAPI_URL:-http://127.0.0.1:8000}"
KEY="${PROXYAPI_KEY:-demo}"

curl -sS --fail-with-body "$URL/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'
echo

# -N shows each event as it arrives; the stream ends with data: [DONE]
curl -sS -N --fail-with-body "$URL/v1/chat/completions" -H "X-API-Key: $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
       "messages": [{"role": "user", "content": "Count to five"}]}'

curl -sS --fail-with-body "$URL/v1/embeddings" -H "X-API-Key: $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "text-embedding-3-small", "input": ["first text", "second text"]}'
echo

curl -sS --fail-with-body "$URL/v1/models" -H "X-API-Key: $KEY"
echo
curl -sS --fail-with-body "$URL/health"
echo
