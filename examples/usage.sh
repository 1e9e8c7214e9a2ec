#!/usr/bin/env bash
# Usage and cost: a key's own history by day, and (admin) every key's as CSV.
set -euo pipefail
URL="${PROXYAPI_URL:-http://127.0.0.1:8000}"
KEY="${PROXYAPI_KEY:-demo}"
ADMIN="${PROXYAPI_ADMIN_KEY:-demo-admin}"

curl -sS --fail-with-body -D - -o /dev/null "$URL/v1/chat/completions" -H "X-API-Key: $KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Count my tokens"}]}' \
  | tr -d '\r' | grep -i '^x-proxyapi-cost-usd:'
sleep 2  # the usage log is written by each worker about once a second

curl -sS --fail-with-body "$URL/v1/usage?group=day" -H "X-API-Key: $KEY"
echo
curl -sS --fail-with-body "$URL/v1/usage?format=csv" -H "X-API-Key: $ADMIN"
