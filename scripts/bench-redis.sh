#!/usr/bin/env bash
# The Redis-engine measurements of issue 10 against Centrifugo (docs/benchmarks.md, "Redis
# engine (issue 10)"): two nodes of the same server on one Redis, publications sent to node A's
# HTTP API, subscribers spread over nodes A and B.
#
#   CENTRIFUGO_BIN=/work/peer/centrifugo SB_BIN=/tmp/switchboard OUT=/tmp/rb scripts/bench-redis.sh
#
# Per round, for each server in turn (centrifugo, switchboard: interleaved so background load
# hits both alike), two fresh nodes on a fresh key prefix (deleted afterwards) for each run:
#   fanout-max-pP  bench fanout -s SUBS --rate 0 --publishers P      deliveries/s, nothing lost
#   fanout-rate    bench fanout -s SUBS --rate LAT_RATE --publishers 2  p99 at LAT_RATE x SUBS/s
#   api-history    bench rpc --kind api-publish -n API_CONC --channel hist:bench
#                  (namespace "hist": history_size 100, history_ttl 300s)  requests/s, p99
# Results (one JSON document per run, label "<server> <run>") go to $OUT/results.json and a
# table to $OUT/summary.txt.
#
# Environment:
#   CENTRIFUGO_BIN  centrifugo binary (built from a fetched snapshot; never committed)  [required]
#   SB_BIN          switchboard binary                                                 [required]
#   OUT             output directory                                              [bench-redis]
#   REDIS_URL       the shared Redis                                   [redis://127.0.0.1:6379/0]
#   SERVERS         servers, in order                                [centrifugo switchboard]
#   ROUNDS          repetitions of the whole set                                           [1]
#   SUBS            subscribers (half on each node)                                    [10000]
#   PUBLISHERS      API publisher counts for the throughput runs                         [1 4]
#   LAT_RATE        publications/s for the latency run (x SUBS = deliveries/s)             [5]
#   API_CONC        concurrent API publishers for api-history (a list)                 [16 64]
#   DRAIN           how long a fan-out run waits for deliveries after publishing stops   [30s]
#   DURATION        measurement phase per run                                            [10s]
#   RUNS            which runs, of: fanout-max fanout-rate api-history                   [all]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${CENTRIFUGO_BIN:?set CENTRIFUGO_BIN to the centrifugo binary}"
: "${SB_BIN:?set SB_BIN to the switchboard binary}"
OUT=${OUT:-bench-redis}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
SERVERS=${SERVERS:-centrifugo switchboard}
ROUNDS=${ROUNDS:-1}
SUBS=${SUBS:-10000}
PUBLISHERS=${PUBLISHERS:-1 4}
LAT_RATE=${LAT_RATE:-5}
API_CONC=${API_CONC:-16 64}
DRAIN=${DRAIN:-30s}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-fanout-max fanout-rate api-history}
SECRET=bench-secret-0123456789abcdef
APIKEY=bench-api-key

for bin in "$CENTRIFUGO_BIN" "$SB_BIN"; do
	[ -x "$bin" ] || { echo "$bin is not an executable file" >&2; exit 2; }
done
for v in ROUNDS SUBS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
for c in $API_CONC $PUBLISHERS; do
	[[ $c =~ ^[1-9][0-9]*$ ]] || { echo "API_CONC and PUBLISHERS must be positive integers, not '$c'" >&2; exit 2; }
done
for r in $RUNS; do
	case $r in fanout-max | fanout-rate | api-history) ;; *) echo "RUNS: unknown run $r" >&2; exit 2 ;; esac
done
command -v redis-cli >/dev/null || { echo "redis-cli is needed (to check Redis and delete the bench keys)" >&2; exit 2; }
want() { [[ " $RUNS " == *" $1 "* ]]; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.json
: >"$RESULTS"
# shellcheck source=scripts/bench-redis-lib.sh
. "$ROOT/scripts/bench-redis-lib.sh"
redis_cli ping >/dev/null || { echo "Redis at $REDIS_URL does not answer" >&2; exit 1; }
trap stop_nodes EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" # the tool holds SUBS connections

# run SERVER NAME bench-args...: two fresh nodes, one bench run, stop.
run() {
	local server=$1 name=$2
	shift 2
	start_nodes "$server" 2
	echo "== $(date -u +%H:%M:%SZ) load $(loadavg) $server $name: $*" >&2
	"$SB_BIN" bench "$@" --url "$NODE_URLS" --api-url "$NODE_API" --api-key "$APIKEY" --secret "$SECRET" \
		--server-pid "${NODE_PIDS[0]}" --label "$server $name" --json >>"$RESULTS" || echo "   (run failed)" >&2
	stop_nodes
	sleep 2 # let TIME_WAIT sockets and memory go
}

for round in $(seq "$ROUNDS"); do
	if want fanout-max; then
		for p in $PUBLISHERS; do
			for s in $SERVERS; do
				run "$s" "fanout-max-p$p" fanout -s "$SUBS" --channels 1 --rate 0 --publishers "$p" \
					--duration "$DURATION" --drain "$DRAIN" --timeout 5m
			done
		done
	fi
	if want fanout-rate; then
		for s in $SERVERS; do
			run "$s" "fanout-rate-$LAT_RATE" fanout -s "$SUBS" --channels 1 --rate "$LAT_RATE" --publishers 2 \
				--duration "$DURATION" --drain "$DRAIN" --timeout 5m
		done
	fi
	if want api-history; then
		for c in $API_CONC; do
			for s in $SERVERS; do
				run "$s" "api-history-c$c" rpc --kind api-publish -n "$c" --channel hist:bench --duration "$DURATION"
			done
		done
	fi
done

# One line per run.
jq -r '
  if .kind == "fanout" then
    "\(.label)\tload \(.machine.load_avg_1m)\tdeliveries/s \(.deliveries_per_second|floor)\tp50 \(.latency.p50_ms) p99 \(.latency.p99_ms) ms\tpublished \(.published) (\(.publish_rate|floor)/s)\tdelivered \(.delivered)/\(.expected_deliveries)\tlost \(.lost)+\(.lost_on_disconnected) dup \(.duplicates) reord \(.reordered)\tconn failed \(.conn_failed)\tnode A cpu \(.server_cpu_percent|floor)%\tclient cpu \(.client_cpu_percent|floor)%"
  else
    "\(.label)\tload \(.machine.load_avg_1m)\trequests/s \(.replies_per_second|floor)\tp50 \(.latency.p50_ms) p99 \(.latency.p99_ms) ms\tok \(.ok)/\(.requests)\ttimeouts \(.timeouts)\terrors \([.reply_errors[]?.count]|add // 0)\tnode A cpu \(.server_cpu_percent|floor)%\tclient cpu \(.client_cpu_percent|floor)%"
  end' "$RESULTS" | tee "$OUT/summary.txt"
echo "results: $RESULTS" >&2
