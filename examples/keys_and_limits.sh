#!/usr/bin/env bash
# Keys made at run time by an admin key: one limited to some models and to a token budget,
# used, refused a model it may not use, then revoked.
set -euo pipefail
URL="${PROXYAPI_URL:-http://127.0.0.1:8000}"
ADMIN="${PROXYAPI_ADMIN_KEY:-demo-admin}"
NAME="example-team-$$"

made=$(curl -sS --fail-with-body "$URL/v1/admin/keys" -H "Authorization: Bearer $ADMIN" \
  -H "Content-Type: application/json" \
  -d "{\"name\": \"$NAME\", \"models\": [\"gpt-4o*\"], \"token_limits\": [\"20000/minute\"], \"ttl\": \"1h\"}")
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
KEY=$(field key <<<"$made")      # the plaintext, shown this once
ID=$(field id <<<"$made")
echo "made key $ID ($NAME)"

chat() {  # prints the HTTP status of a chat call with key $1 and model $2
  curl -sS -o /dev/null -w '%{http_code}\n' "$URL/v1/chat/completions" \
    -H "Authorization: Bearer $1" -H "Content-Type: application/json" \
    -d "{\"model\": \"$2\", \"max_tokens\": 100, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}"
}
echo "gpt-4o-mini: $(chat "$KEY" gpt-4o-mini)"            # 200
echo "claude-sonnet-4-5: $(chat "$KEY" claude-sonnet-4-5)" # 403: not in its models

curl -sS --fail-with-body -X POST "$URL/v1/admin/keys/$ID/revoke" -H "Authorization: Bearer $ADMIN" >/dev/null
echo "after revoking: $(chat "$KEY" gpt-4o-mini)"          # 401
