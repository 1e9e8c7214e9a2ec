#!/usr/bin/env bash
# Prometheus metrics, merged over the workers: requests by route and status, upstream calls.
set -euo pipefail
URL="${PROXYAPI_URL:-http://127.0.0.1:8000}"

curl -sS --fail-with-body "$URL/metrics" | grep -E '^proxyapi_(requests_total|upstream_requests_total)'
