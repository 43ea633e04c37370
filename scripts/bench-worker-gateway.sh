#!/usr/bin/env bash
# Comparative load run for the worker gateway (issue 5):
#   (a) Switchboard gateway -> Node worker over stdin/stdout
#   (b) a plain Node HTTP server doing the same task
#   (c) a Go reverse proxy (net/http/httputil) in front of (b)
# at concurrency 64 and 1, with wrk (apt-get install -y wrk).
# Usage: scripts/bench-worker-gateway.sh [duration, default 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
BIN=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$BIN"' EXIT

go build -o "$BIN/switchboard" ./cmd/switchboard
go build -o "$BIN/benchproxy" ./internal/gateway/cmd/benchproxy
cat > "$BIN/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"input":{"a":5,"b":3}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-runner-token"] = "secret"
LUA

# (a) is the real server: `switchboard serve --worker ... --workers 1`, token from the environment.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" SWITCHBOARD_RUNNER_TOKEN=secret \
  "$BIN/switchboard" serve --port 7070 --log-level warn --worker "node sdk/worker-node/examples/worker.js" --workers 1 >/dev/null &
node internal/gateway/testdata/bench/node-http-server.js 7071 &
"$BIN/benchproxy" -addr 127.0.0.1:7072 -target http://127.0.0.1:7071 2>/dev/null &

for port in 7070 7071 7072; do
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null -H 'x-runner-token: secret' -d '{"input":{"a":5,"b":3}}' "http://127.0.0.1:$port/__runner/task/app.tasks.add"; then break; fi
    sleep 0.1
  done
  echo "port $port: $(curl -fsS -H 'x-runner-token: secret' -d '{"input":{"a":5,"b":3}}' "http://127.0.0.1:$port/__runner/task/app.tasks.add")"
done

run() { # name port conns threads
  local out
  wrk -t"$4" -c"$3" -d2s -s "$BIN/post.lua" "http://127.0.0.1:$2/__runner/task/app.tasks.add" >/dev/null # warm-up
  out=$(wrk -t"$4" -c"$3" -d"$DUR" --latency -s "$BIN/post.lua" "http://127.0.0.1:$2/__runner/task/app.tasks.add")
  local rps p50 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  printf '%-28s c=%-3s %10s req/s   p50 %-8s non-2xx %s\n' "$1" "$3" "$rps" "$p50" "${non2xx:-0}"
}

echo "date: $(date -u +%FT%TZ)  cpus: $(nproc)  duration: $DUR"
for c in 64 1; do
  t=$([ "$c" = 1 ] && echo 1 || echo 2)
  run "(a) switchboard->node stdio" 7070 "$c" "$t"
  run "(b) node http" 7071 "$c" "$t"
  run "(c) go proxy->node http" 7072 "$c" "$t"
done
