# Shared by scripts/bench-redis.sh and scripts/bench-100k.sh (sourced, not run): start N
# nodes of one server (switchboard or centrifugo) on one Redis with a fresh key prefix, stop
# them, delete the prefix's keys. Every process started here is recorded in NODE_PIDS and
# stopped by stop_nodes, which the callers run from their EXIT trap.
#
# Needs: SB_BIN, CENTRIFUGO_BIN, REDIS_URL, OUT, SECRET, APIKEY.

NODE_PIDS=()
NODE_PREFIX=
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# redis_cli runs redis-cli against $REDIS_URL.
redis_cli() { redis-cli -u "$REDIS_URL" "$@"; }

# node_config PORT PREFIX: the same config for both servers (Centrifugo v6 keys Switchboard
# also accepts): the Redis engine, a "bench" namespace for fan-out and a "hist" namespace
# with history for the API publish runs.
node_config() {
	cat <<JSON
{
  "log": {"level": "warn"},
  "http_server": {"address": "127.0.0.1", "port": $1},
  "client": {"token": {"hmac_secret_key": "$SECRET"}},
  "http_api": {"key": "$APIKEY"},
  "engine": {"type": "redis", "redis": {"address": "$REDIS_URL", "prefix": "$2"}},
  "channel": {"namespaces": [
    {"name": "bench", "allow_subscribe_for_client": true, "allow_publish_for_client": true},
    {"name": "hist", "history_size": 100, "history_ttl": "300s", "allow_subscribe_for_client": true}
  ]}
}
JSON
}

# base_port SERVER: node k of SERVER listens on base_port + k (shifted by PORT_SHIFT).
base_port() {
	case $1 in
	switchboard) echo $((18110 + ${PORT_SHIFT:-0})) ;;
	centrifugo) echo $((18010 + ${PORT_SHIFT:-0})) ;;
	*) echo "unknown server $1" >&2; exit 2 ;;
	esac
}

# start_nodes SERVER COUNT [ULIMIT]: starts COUNT nodes on one fresh prefix; sets NODE_PIDS,
# NODE_URLS (comma-separated WebSocket URLs), NODE_API (node 0's API base URL).
start_nodes() {
	local server=$1 count=$2 nofile=${3:-}
	local base
	base=$(base_port "$server")
	NODE_PREFIX=bench-$server-$$-$RANDOM
	NODE_URLS=
	NODE_PIDS=()
	for k in $(seq 0 $((count - 1))); do
		local port=$((base + k))
		if port_open "$port"; then
			echo "port $port is already in use: stop whatever listens there first" >&2
			exit 1
		fi
		node_config "$port" "$NODE_PREFIX" >"$OUT/$server-$k.json"
		local bin
		case $server in
		switchboard) bin=("$SB_BIN" serve -c "$OUT/$server-$k.json") ;;
		centrifugo) bin=("$CENTRIFUGO_BIN" -c "$OUT/$server-$k.json") ;;
		esac
		if [ -n "$nofile" ]; then
			(ulimit -n "$nofile" && exec "${bin[@]}") >>"$OUT/$server-$k.log" 2>&1 &
		else
			"${bin[@]}" >>"$OUT/$server-$k.log" 2>&1 &
		fi
		NODE_PIDS+=($!)
		NODE_URLS+=${NODE_URLS:+,}ws://127.0.0.1:$port/connection/websocket
	done
	NODE_API=http://127.0.0.1:$base/api
	for k in $(seq 0 $((count - 1))); do
		local port=$((base + k)) ok=
		for _ in $(seq 200); do
			if ! kill -0 "${NODE_PIDS[$k]}" 2>/dev/null; then
				echo "$server node $k exited at startup; see $OUT/$server-$k.log" >&2
				exit 1
			fi
			if port_open "$port"; then ok=1; break; fi
			sleep 0.1
		done
		[ -n "$ok" ] || { echo "$server node $k did not listen on $port" >&2; exit 1; }
	done
	sleep 1 # let the runtimes settle before any RSS baseline
}

# stop_nodes: SIGTERM every node, SIGKILL after 10 s, then delete the prefix's keys.
stop_nodes() {
	local pid
	for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${NODE_PIDS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	NODE_PIDS=()
	if [ -n "$NODE_PREFIX" ]; then
		redis_cli --scan --pattern "$NODE_PREFIX*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null || true
		NODE_PREFIX=
	fi
}

# rss_sum PID...: summed VmRSS of the processes in bytes.
rss_sum() {
	local total=0 pid kb
	for pid in "$@"; do
		kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		total=$((total + ${kb:-0} * 1024))
	done
	echo "$total"
}

# loadavg: the 1-minute load average.
loadavg() { cut -d' ' -f1 /proc/loadavg; }
