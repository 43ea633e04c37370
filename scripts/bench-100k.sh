#!/usr/bin/env bash
# 100,000 concurrent subscribed connections across six server processes on one Redis, the
# load split over six `switchboard bench conns` processes, each process under the 20,000
# open-files limit (issue 10, docs/benchmarks.md "Redis engine (issue 10)"):
#
#   SB_BIN=/tmp/switchboard OUT=/tmp/b100k scripts/bench-100k.sh
#   SERVERS="switchboard centrifugo" CENTRIFUGO_BIN=/work/peer/centrifugo SB_BIN=… scripts/bench-100k.sh
#
# For each server in SERVERS:
#   1. NODES nodes on one fresh Redis key prefix (ulimit -n NOFILE each); their summed RSS
#      (VmRSS) is the baseline.
#   2. LOADERS load processes (ulimit -n NOFILE each), each holding CONNS/LOADERS connections
#      spread round-robin over all nodes (connection i goes to node i mod NODES), from its own
#      source address 127.0.0.(2+k), all subscribed to the one channel bench:marker0. Each
#      writes a ready file once its connections are up (bench conns --ready-file).
#   3. When every load process is ready: summed node RSS again, open files per process; RSS per
#      connection = (summed RSS − summed baseline) / connections established.
#   4. One publication (the marker, stamped {"t":<unix ns>}) is sent to node 0's HTTP API; every
#      load process records when each of its connections received it (bench conns
#      --await-marker) and exits. The time for the publication to reach all connections is
#      max over the load processes of their last receipt − the stamp: every process reads the
#      same machine clock (unix nanoseconds).
# Output: $OUT/<server>/loader-K.json (bench conns --json), $OUT/<server>/summary.json, and a
# line per server on stdout. Every process started here is stopped on exit (trap).
#
# Environment:
#   SERVERS         servers to measure, in order                                [switchboard]
#   SB_BIN          switchboard binary (runs the load processes, and the nodes)      [required]
#   CENTRIFUGO_BIN  centrifugo binary (when SERVERS has centrifugo)
#   OUT             output directory                                               [bench-100k]
#   REDIS_URL       the shared Redis                                [redis://127.0.0.1:6379/0]
#   CONNS           connections in total                                             [100000]
#   NODES           server processes                                                      [6]
#   LOADERS         load processes                                                        [6]
#   NOFILE          ulimit -n of every process (at most the hard limit)              [19500]
#   DIAL            connections being opened at once per load process                     [8]
#   PROCS           GOMAXPROCS of every node and load process (12 Go processes share the
#                   machine's cores; 0 = the Go default, one per core)                       [1]
#   READY_TIMEOUT   seconds to wait for all connections                                 [900]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${SB_BIN:?set SB_BIN to the switchboard binary}"
SERVERS=${SERVERS:-switchboard}
OUT=${OUT:-bench-100k}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
CONNS=${CONNS:-100000}
NODES=${NODES:-6}
LOADERS=${LOADERS:-6}
NOFILE=${NOFILE:-19500}
DIAL=${DIAL:-8}
PROCS=${PROCS:-1}
READY_TIMEOUT=${READY_TIMEOUT:-900}
SECRET=bench-secret-0123456789abcdef
APIKEY=bench-api-key
CHANNEL=bench:marker0
PORT_SHIFT=${PORT_SHIFT:-20} # node ports 18130… / 18030…, clear of scripts/bench-redis.sh

[[ $PROCS =~ ^[0-9]+$ ]] || { echo "PROCS must be a number, not '$PROCS'" >&2; exit 2; }
if [ "$PROCS" -gt 0 ]; then export GOMAXPROCS=$PROCS; fi # nodes and load processes alike
for v in CONNS NODES LOADERS NOFILE DIAL READY_TIMEOUT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$NOFILE" -gt "$hard" ]; then
	echo "NOFILE=$NOFILE is above the open-files hard limit $hard" >&2
	exit 2
fi
PER_LOADER=$(((CONNS + LOADERS - 1) / LOADERS))
PER_NODE=$(((CONNS + NODES - 1) / NODES))
for per in $PER_LOADER $PER_NODE; do
	if [ $((per + 200)) -gt "$NOFILE" ]; then
		echo "$per connections per process do not fit NOFILE=$NOFILE: raise LOADERS/NODES" >&2
		exit 2
	fi
done
for s in $SERVERS; do
	case $s in
	switchboard) ;;
	centrifugo) [ -x "${CENTRIFUGO_BIN:-}" ] || { echo "set CENTRIFUGO_BIN to the centrifugo binary" >&2; exit 2; } ;;
	*) echo "SERVERS: unknown server $s" >&2; exit 2 ;;
	esac
done
command -v redis-cli >/dev/null || { echo "redis-cli is needed" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 2; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BASE_OUT=$OUT
# shellcheck source=scripts/bench-redis-lib.sh
. "$ROOT/scripts/bench-redis-lib.sh"
redis_cli ping >/dev/null || { echo "Redis at $REDIS_URL does not answer" >&2; exit 1; }

LOADER_PIDS=()
cleanup() {
	local pid
	for pid in "${LOADER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${LOADER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	LOADER_PIDS=()
	stop_nodes
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rotate LIST K: the comma-separated LIST starting at element K (so each load process's first
# connection goes to a different node).
rotate() {
	local a out= i
	IFS=, read -r -a a <<<"$1"
	for ((i = 0; i < ${#a[@]}; i++)); do
		out+=${out:+,}${a[$(((i + $2) % ${#a[@]}))]}
	done
	echo "$out"
}

openfiles() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

measure() {
	local server=$1
	OUT=$BASE_OUT/$server
	mkdir -p "$OUT"
	rm -f "$OUT"/ready.* "$OUT"/loader-*.json
	echo "== $(date -u +%H:%M:%SZ) load $(loadavg) $server: $NODES nodes, $LOADERS load processes, $CONNS connections" >&2
	start_nodes "$server" "$NODES" "$NOFILE"
	local base_rss
	base_rss=$(rss_sum "${NODE_PIDS[@]}")
	local t0
	t0=$(date +%s)
	LOADER_PIDS=()
	for k in $(seq 0 $((LOADERS - 1))); do
		local n=$PER_LOADER
		if [ $((k * PER_LOADER + n)) -gt "$CONNS" ]; then n=$((CONNS - k * PER_LOADER)); fi
		(
			ulimit -n "$NOFILE"
			exec "$SB_BIN" bench conns -n "$n" --subs 1 --channels 1 --prefix bench:marker \
				--url "$(rotate "$NODE_URLS" "$k")" --source-ips "127.0.0.$((2 + k))" \
				--secret "$SECRET" --dial-concurrency "$DIAL" --handshake-timeout 60s \
				--settle 3s --duration 3s --timeout 30m \
				--await-marker --marker-timeout 5m --ready-file "$OUT/ready.$k" \
				--label "$server loader $k" --json
		) >"$OUT/loader-$k.json" 2>"$OUT/loader-$k.log" &
		LOADER_PIDS+=($!)
	done
	# Wait for every load process to be ready.
	while :; do
		local ready=0 pid
		for k in $(seq 0 $((LOADERS - 1))); do
			if [ -f "$OUT/ready.$k" ]; then ready=$((ready + 1)); fi
		done
		[ "$ready" -eq "$LOADERS" ] && break
		for pid in "${LOADER_PIDS[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				echo "a load process exited before it was ready; see $OUT/loader-*.log" >&2
				exit 1
			fi
		done
		for pid in "${NODE_PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null || { echo "a $server node exited; see $OUT/$server-*.log" >&2; exit 1; }
		done
		if [ $(($(date +%s) - t0)) -gt "$READY_TIMEOUT" ]; then
			echo "not every load process was ready within ${READY_TIMEOUT}s" >&2
			exit 1
		fi
		sleep 1
	done
	local ramp_s=$(($(date +%s) - t0))
	local established=0
	for k in $(seq 0 $((LOADERS - 1))); do established=$((established + $(cat "$OUT/ready.$k"))); done
	sleep 2
	local rss client_rss max_fd=0 fd pid
	rss=$(rss_sum "${NODE_PIDS[@]}")
	client_rss=$(rss_sum "${LOADER_PIDS[@]}")
	for pid in "${NODE_PIDS[@]}" "${LOADER_PIDS[@]}"; do
		fd=$(openfiles "$pid")
		if [ "$fd" -gt "$max_fd" ]; then max_fd=$fd; fi
	done
	local load
	load=$(loadavg)
	# The marker.
	local sent
	sent=$(date +%s%N)
	curl -sS --max-time 30 -H "X-API-Key: $APIKEY" -H 'Content-Type: application/json' \
		-d "{\"channel\":\"$CHANNEL\",\"data\":{\"t\":$sent,\"s\":1,\"w\":0,\"p\":\"marker\"}}" \
		"$NODE_API/publish" >"$OUT/marker-reply.json"
	local rc=0
	for pid in "${LOADER_PIDS[@]}"; do wait "$pid" || rc=1; done
	LOADER_PIDS=()
	[ "$rc" -eq 0 ] || echo "a load process failed; see $OUT/loader-*.log" >&2
	stop_nodes
	jq -s --arg server "$server" --argjson sent "$sent" --argjson base "$base_rss" --argjson rss "$rss" \
		--argjson client_rss "$client_rss" --argjson established "$established" --argjson ramp "$ramp_s" \
		--argjson max_fd "$max_fd" --argjson nodes "$NODES" --argjson loaders "$LOADERS" --arg load "$load" \
		--argjson nofile "$NOFILE" --argjson procs "$PROCS" '{
		server: $server, nodes: $nodes, load_processes: $loaders, nofile_limit: $nofile, gomaxprocs: $procs,
		connections_requested: (map(.conns_requested) | add), established: $established,
		failed: (map(.failed) | add), still_open: (map(.still_open) | add),
		ramp_seconds: $ramp, load_avg_1m_at_marker: ($load | tonumber),
		max_open_files_per_process: $max_fd,
		server_rss_before: $base, server_rss_after: $rss,
		server_rss_per_conn: (($rss - $base) / $established),
		client_rss_total: $client_rss,
		marker_sent_unix_nano: $sent,
		marker_received: (map(.marker_received // 0) | add),
		marker_missing: (map(.marker_missing // 0) | add),
		marker_all_ms: (((map(.marker_last_unix_nano // 0) | max) - $sent) / 1e6),
		marker_first_ms: (((map(.marker_first_unix_nano // 0) | min) - $sent) / 1e6),
		marker_p50_ms_per_process: map(.marker_latency.p50_ms),
		marker_p99_ms_per_process: map(.marker_latency.p99_ms),
		disconnects: (map(.disconnects // []) | add)
	}' "$OUT"/loader-*.json | tee "$OUT/summary.json" >&2
	jq -r '"\(.server): \(.established) of \(.connections_requested) connections (\(.failed) failed) on \(.nodes) nodes in \(.ramp_seconds) s; max open files per process \(.max_open_files_per_process); server RSS \(.server_rss_after/1048576|floor) MiB total, \(.server_rss_per_conn/1024*10|round/10) KB per connection; marker reached \(.marker_received) (missing \(.marker_missing)) in \(.marker_all_ms*10|round/10) ms (first after \(.marker_first_ms*10|round/10) ms); load \(.load_avg_1m_at_marker)"' "$OUT/summary.json"
	sleep 5 # let TIME_WAIT sockets and memory go
}

for s in $SERVERS; do
	measure "$s"
done
