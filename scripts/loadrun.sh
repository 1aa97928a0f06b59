#!/usr/bin/env bash
# Load run (issue 5): the demo on PostgreSQL, GET /v1/ping with key
# verification, then the same server with the middleware off; 10 s each
# with wrk on loopback. Prints requests/second of both and their ratio.
# Needs wrk (apt-get install wrk) and the machine's PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
DSN=${KEYS_TEST_POSTGRES:-postgres://root@127.0.0.1:5432/test}
bin=$(mktemp -d)/keysdemo
go build -o "$bin" ./cmd/keysdemo
schema=keys_load_$$
rps() {
  "$bin" --addr 127.0.0.1:18080 --store postgres --dsn "$DSN" --schema "$schema" "$@" > "$bin.out" 2> /dev/null &
  local pid=$!
  for _ in $(seq 50); do grep -q '^bootstrap key: ' "$bin.out" 2> /dev/null && break; sleep 0.1; done
  sleep 0.5
  local key
  key=$(sed -n 's/^bootstrap key: //p' "$bin.out")
  wrk -t2 -c32 -d10s -H "Authorization: Bearer $key" http://127.0.0.1:18080/v1/ping | awk '/Requests\/sec/ {print $2}'
  kill -TERM "$pid"; wait "$pid" || true
}
with=$(rps)
without=$(rps --unauthenticated-ping)
psql "$DSN" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" > /dev/null 2>&1 || true
echo "GET /v1/ping, PostgreSQL store: ${with} req/s with key verification, ${without} req/s without"
awk -v a="$with" -v b="$without" 'BEGIN { printf "with/without = %.3f\n", a / b }'
