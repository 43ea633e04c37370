#!/usr/bin/env bash
# Issue 12's relay measurements with `switchboard bench relay`, each on a fresh relay:
#
#   SB_BIN=/tmp/switchboard OUT=/tmp/relay scripts/bench-relay.sh
#
# Runs (RUNS picks a subset):
#   issun        1,000 ISSUN clients, rooms of 8, 1.5 ev/s each   (10,500 deliveries/s)
#   native       1,000 native clients, rooms of 8, 10 ev/s each   (70,000 deliveries/s, reliable)
#   unreliable   the same in datagrams
#   native100k   1,000 native clients, rooms of 8, 14.3 ev/s for 60 s (100,000 deliveries/s)
#   conns10k     10,000 native clients, rooms of 8, 0.5 ev/s each  (35,000 deliveries/s)
#   idle         1,000 native clients held idle for 150 s: the relay's RSS once the
#                runtime's forced GC (every 2 min) has run, not the snapshot right after connecting
#
# LAYOUT=shared lets relay and load tool share both cores; LAYOUT=pinned puts the relay on CPU 0
# and the load tool on CPU 1 (taskset), as two one-core machines would be. Each run writes
# $OUT/<layout>-<run>.txt (the tool's report, with the load average, the relay's CPU and RSS and
# the kernel's drops at the relay's port).
#
# Environment:
#   SB_BIN   switchboard binary                                 [required]
#   OUT      output directory                                    [bench-relay]
#   RUNS     runs                 [issun native unreliable native100k conns10k idle]
#   LAYOUT   shared and/or pinned                                      [shared pinned]
#   PORT     relay UDP port (HTTP on PORT+1)                               [35713]
#   DURATION sending time of the 1,000-client runs                          [20s]
set -euo pipefail

: "${SB_BIN:?set SB_BIN to the switchboard binary}"
OUT=${OUT:-bench-relay}
RUNS=${RUNS:-issun native unreliable native100k conns10k idle}
LAYOUT=${LAYOUT:-shared pinned}
PORT=${PORT:-35713}
DURATION=${DURATION:-20s}
[ -x "$SB_BIN" ] || { echo "$SB_BIN is not an executable file" >&2; exit 2; }
mkdir -p "$OUT"
ulimit -n 19500

server_pid=""
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
trap stop_server EXIT

# start_server LAYOUT: a fresh relay with limits above the runs' load; sets server_pid and pin.
start_server() {
	local cfg="$OUT/relay.json" log="$OUT/relay.log" pre=""
	cat >"$cfg" <<-EOF
	{"http_server": {"address": "127.0.0.1", "port": $((PORT + 1))},
	 "relay": {"enabled": true, "address": "127.0.0.1:$PORT", "max_clients": 12000,
	           "event_rate": 1000, "event_burst": 2000}}
	EOF
	[ "$1" = pinned ] && pre="taskset -c 0"
	$pre "$SB_BIN" serve -c "$cfg" >"$log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		kill -0 "$server_pid" 2>/dev/null || { echo "relay exited; see $log" >&2; tail -3 "$log" >&2; exit 1; }
		if grep -q 'msg="relay listening"' "$log"; then
			pin=$(grep -o 'sha256=[0-9a-f]*' "$log" | head -1 | cut -d= -f2)
			return 0
		fi
		sleep 0.1
	done
	echo "relay did not start; see $log" >&2
	exit 1
}

run() { # run LAYOUT NAME ARGS...
	local layout=$1 name=$2 pre=""
	shift 2
	[ "$layout" = pinned ] && pre="taskset -c 1"
	start_server "$layout"
	echo "== $layout $name ($(uptime | sed 's/.*load/load/'))"
	$pre "$SB_BIN" bench relay --addr "127.0.0.1:$PORT" --pin "$pin" --server-pid "$server_pid" "$@" \
		| tee "$OUT/$layout-$name.txt"
	stop_server
}

for layout in $LAYOUT; do
	for r in $RUNS; do
		case $r in
		issun) run "$layout" issun --protocol issun -n 1000 --room-size 8 --rate 1.5 --duration "$DURATION" ;;
		native) run "$layout" native -n 1000 --room-size 8 --rate 10 --duration "$DURATION" ;;
		unreliable) run "$layout" unreliable --unreliable -n 1000 --room-size 8 --rate 10 --duration "$DURATION" ;;
		native100k) run "$layout" native100k -n 1000 --room-size 8 --rate 14.3 --duration 60s ;;
		conns10k) run "$layout" conns10k -n 10000 --room-size 8 --rate 0.5 --duration "$DURATION" --sockets 16 ;;
		idle) run "$layout" idle -n 1000 --room-size 8 --rate 0.1 --duration 2s --idle 150s ;;
		*) echo "unknown run $r" >&2; exit 2 ;;
		esac
	done
done
