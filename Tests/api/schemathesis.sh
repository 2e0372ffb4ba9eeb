#!/usr/bin/env bash
# The OpenAPI description (docs/openapi.yaml) against a running authority: schemathesis
# generates requests from it — valid, invalid, and without a key — and checks every answer:
# no 5xx, every status and content type documented, every body matching its schema, invalid
# input refused, keys enforced. Run by .ci/run; by hand: bash Tests/api/schemathesis.sh [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
TETHER=${TETHER_BIN:-.build/debug/tether}
MAX=${1:-60}
python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4.3,<5'

state=$(mktemp -d /tmp/tether-api-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TETHER" authority init --dir "$state" >/dev/null
"$TETHER" authority serve --dir "$state" --listen "127.0.0.1:$port" --lease 3s 2>"$state/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
url="http://127.0.0.1:$port"
op=$(cat "$state/operator.key")
agent=$(cat "$state/agent.key")
# Surfaces the examples can name, so positive cases reach past "not found".
for s in agent-01 a b; do
  curl -sf -X POST "$url/api/v1/devices/register" -H "x-org-key: $agent" -d "{\"deviceId\":\"$s\"}" >/dev/null
done

# The watch route is a stream that never ends by design: it is checked below by hand, and
# in Swift (LiveTests, LimitsTests, FloodTests).
common=(--url "$url" --max-examples "$MAX" --exclude-path /api/v1/devices/watch
        --request-timeout 5 --suppress-health-check all
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,missing_required_header,unsupported_method)
echo "== as an operator (every route)"
schemathesis run docs/openapi.yaml "${common[@]}" -H "x-org-key: $op"
echo "== as an agent (operator routes answer 403, as documented)"
schemathesis run docs/openapi.yaml "${common[@]}" -H "x-org-key: $agent" --phases examples,coverage

echo "== watch: statuses"
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true; }
check() { [ "$1" = "$2" ] || { echo "watch: expected $2, got $1 ($3)"; exit 1; }; }
check "$(code "$url/api/v1/devices/watch?deviceId=a")" 401 "no key"
check "$(code -H "x-org-key: $agent" "$url/api/v1/devices/watch")" 400 "no surface"
check "$(code -H "x-org-key: $agent" "$url/api/v1/devices/watch?deviceId=a%20b")" 400 "bad name"
ghosts=$(python3 -c 'print("&".join(f"deviceId=ghost-{i}" for i in range(65)))')
check "$(code -H "x-org-key: $agent" "$url/api/v1/devices/watch?$ghosts")" 404 "65 unknown surfaces"
head=$(curl -s -i --max-time 1 -H "x-org-key: $agent" "$url/api/v1/devices/watch?deviceId=a&nonce=n1" || true)
echo "$head" | grep -q '^HTTP/1.1 200' || { echo "watch: no stream: $head"; exit 1; }
echo "$head" | grep -q '^event: decision' || { echo "watch: no decision event"; exit 1; }
if grep -q 'internal error' "$state/serve.log"; then echo "the server logged an internal error:"; grep 'internal error' "$state/serve.log"; exit 1; fi
echo "schemathesis: passed"
