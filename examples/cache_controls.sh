#!/usr/bin/env bash
# The response cache: a deterministic request (temperature 0) is a MISS, then a HIT;
# Cache-Control asks for a fresh answer or for none to be kept.
set -euo pipefail
URL="${PROXYAPI_URL:-http://127.0.0.1:8000}"
KEY="${PROXYAPI_KEY:-demo}"
BODY='{"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "Cache me"}]}'

ask() {  # prints the X-Cache header of one call, with extra curl arguments
  curl -sS --fail-with-body -o /dev/null -D - "$URL/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d "$BODY" "$@" \
    | tr -d '\r' | grep -i '^x-cache:'
}

ask                                   # X-Cache: MISS (or HIT if run before)
ask                                   # X-Cache: HIT
ask -H "Cache-Control: no-cache"      # X-Cache: REFRESH: fetched anew, the entry replaced
ask -H "Cache-Control: max-age=3600"  # X-Cache: HIT: a cached answer at most an hour old will do
ask -H "Cache-Control: no-store"      # a new answer would not be kept (this one is a HIT)
