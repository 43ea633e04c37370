#!/usr/bin/env bash
# Reproduces the load measurements of docs/benchmarks.md.
#
#   scripts/bench.sh                  # Switchboard only (what `make bench` runs)
#   SERVERS="centrifugo switchboard" CENTRIFUGO_BIN=/tmp/centrifugo scripts/bench.sh
#
# Every scenario starts a fresh server (so RSS baselines are comparable), runs one bounded
# bench command against it on loopback, and appends the --json result to $OUT/results.json.
# With several servers the scenarios are interleaved (A, B, A, B, ...) so that background load
# on the machine hits both alike. Charts are rendered into $OUT/img at the end.
#
# Environment:
#   SERVERS          servers to measure, in order (switchboard, centrifugo)   [switchboard]
#   SB_BIN  switchboard binary (built from this tree when unset)
#   CENTRIFUGO_BIN   centrifugo binary (build it from a fetched snapshot; never committed)
#   BENCH            bench command (default: "<switchboard> bench", or the standalone
#                    internal/bench/cmd/sbbench when the CLI does not have it yet)
#   OUT              output directory                                           [bench-out]
#   CONNS            connection counts for the memory runs            [1000 5000 10000 19000]
#   FANOUT_SUBS      subscriber counts for the throughput runs                [1000 10000 19000]
#   FANOUT_PUBLISHERS API publishers in the throughput runs                             [8]
#   LAT_SUBS         subscribers for the latency runs                                   [10000]
#   LAT_RATES        publications/s for the latency runs (x LAT_SUBS = deliveries/s) [1 5 10 20]
#   DURATION         measurement phase per run                                          [10s]
#   PROTOCOL         json or protobuf                                                    [json]
#   SCENARIOS        scenario groups to run, of: conns fanout latency rpc              [all four]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVERS=${SERVERS:-switchboard}
OUT=${OUT:-$ROOT/bench-out}
CONNS=${CONNS:-1000 5000 10000 19000}
FANOUT_SUBS=${FANOUT_SUBS:-1000 10000 19000}
LAT_SUBS=${LAT_SUBS:-10000}
LAT_RATES=${LAT_RATES:-1 5 10 20}
DURATION=${DURATION:-10s}
PROTOCOL=${PROTOCOL:-json}
FANOUT_PUBLISHERS=${FANOUT_PUBLISHERS:-8}
SCENARIOS=${SCENARIOS:-conns fanout latency rpc}
for sc in $SCENARIOS; do
	case $sc in
	conns | fanout | latency | rpc) ;;
	*) echo "SCENARIOS: unknown scenario group $sc (want conns, fanout, latency, rpc)" >&2; exit 2 ;;
	esac
done
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
SECRET=bench-secret-0123456789abcdef
APIKEY=bench-api-key
PORT_SWITCHBOARD=18100
PORT_CENTRIFUGO=18000

ulimit -n "$(ulimit -Hn)" # servers and the tool need one descriptor per connection
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.json
: > "$RESULTS"

if [ -z "${SB_BIN:-}" ]; then
	SB_BIN=$OUT/switchboard
	(cd "$ROOT" && go build -o "$SB_BIN" ./cmd/switchboard)
fi
if [ -z "${BENCH:-}" ]; then
	if "$SB_BIN" bench --help >/dev/null 2>&1; then
		BENCH="$SB_BIN bench"
	else
		(cd "$ROOT" && go build -o "$OUT/sbbench" ./internal/bench/cmd/sbbench)
		BENCH=$OUT/sbbench
	fi
fi

# One config for both servers: only Centrifugo v6 keys that Switchboard also accepts.
config() { # $1 = port
	cat <<JSON
{
  "log": {"level": "warn"},
  "http_server": {"address": "127.0.0.1", "port": $1},
  "client": {"token": {"hmac_secret_key": "$SECRET"}},
  "http_api": {"key": "$APIKEY"},
  "channel": {"namespaces": [{"name": "bench", "allow_subscribe_for_client": true, "allow_publish_for_client": true}]}
}
JSON
}
config $PORT_SWITCHBOARD > "$OUT/switchboard.json"
config $PORT_CENTRIFUGO > "$OUT/centrifugo.json"

PID=
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() { # $1 = server; sets PID and URL
	for p in $PORT_SWITCHBOARD $PORT_CENTRIFUGO; do
		if port_open "$p"; then
			echo "port $p is already in use: stop whatever listens there first" >&2
			exit 1
		fi
	done
	case $1 in
	switchboard)
		"$SB_BIN" serve -c "$OUT/switchboard.json" >>"$OUT/switchboard.log" 2>&1 &
		PORT=$PORT_SWITCHBOARD ;;
	centrifugo)
		"${CENTRIFUGO_BIN:?set CENTRIFUGO_BIN}" -c "$OUT/centrifugo.json" >>"$OUT/centrifugo.log" 2>&1 &
		PORT=$PORT_CENTRIFUGO ;;
	*) echo "unknown server $1" >&2; exit 2 ;;
	esac
	PID=$!
	URL=ws://127.0.0.1:$PORT/connection/websocket
	for _ in $(seq 100); do
		if ! kill -0 "$PID" 2>/dev/null; then
			echo "$1 exited at startup; see $OUT/$1.log" >&2
			exit 1
		fi
		if port_open "$PORT"; then
			sleep 1 # let the runtime settle before the RSS baseline
			return
		fi
		sleep 0.1
	done
	echo "$1 did not start listening on $PORT" >&2
	exit 1
}
stop() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$PID" 2>/dev/null || true # graceful shutdown took over 10 s
		wait "$PID" 2>/dev/null || true
		PID=
	fi
}
trap stop EXIT INT TERM

run() { # $1 = server, rest = bench arguments
	local server=$1
	shift
	start "$server"
	echo "== $server: $*" >&2
	$BENCH "$@" --url "$URL" --secret "$SECRET" --protocol "$PROTOCOL" --server-pid "$PID" \
		--label "$server" --json >>"$RESULTS" || echo "   (run failed)" >&2
	stop
	sleep 2 # let TIME_WAIT sockets and memory go
}

want conns && for n in $CONNS; do
	for s in $SERVERS; do
		run "$s" conns -n "$n" --subs 1 --channels 1000 --duration "$DURATION" --settle 5s
	done
done
want fanout && for n in $FANOUT_SUBS; do
	for s in $SERVERS; do
		run "$s" fanout -s "$n" --channels 1 --rate 0 --publishers "$FANOUT_PUBLISHERS" --api-key "$APIKEY" --duration "$DURATION" --drain 10s
	done
done
want latency && for r in $LAT_RATES; do
	for s in $SERVERS; do
		run "$s" fanout -s "$LAT_SUBS" --channels 1 --rate "$r" --publishers 2 --api-key "$APIKEY" --duration "$DURATION" --drain 10s
	done
done
want rpc && for s in $SERVERS; do
	run "$s" rpc -n 10 --kind publish --channel bench:rpc --duration "$DURATION"
done

$BENCH plot --in "$RESULTS" --out "$OUT/img"
echo "results: $RESULTS" >&2
