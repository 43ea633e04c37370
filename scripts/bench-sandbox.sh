#!/usr/bin/env bash
# Reproduces "Circles: the sandbox under attack" in docs/benchmarks.md.
#
#   scripts/bench-sandbox.sh /tmp/sb-before /tmp/sb-after
#
# For each binary: three attack scripts (allocation bomb, formatting bomb, store flood), each
# against a fresh server, reporting time to the answer, peak RSS of the server and of its
# sandbox children, store size and whether the server survived; then hub publish round trips
# (bench rpc --kind publish, 10 connections, 1000/s, 10 s) idle and while four CPU-bound plays
# run. Every server runs under `prlimit --as=$AS_LIMIT` (default 4 GiB, inherited by its
# children) so that a binary without the sandbox cannot take the machine down.
#
# Environment: PORT [8311], AS_LIMIT [4294967296], OUT [bench-sandbox-out]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
PORT=${PORT:-8311}
AS_LIMIT=${AS_LIMIT:-4294967296}
OUT=${OUT:-bench-sandbox-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

KEY=$("$1" keygen | awk '/public_key_compressed/{print $2}')
cat >"$OUT/config.json" <<EOF
{
  "http_server": {"port": $PORT},
  "log": {"level": "warn"},
  "client": {"token": {"hmac_secret_key": "bench-secret"}},
  "http_api": {"key": "bench-key"},
  "channel": {"namespaces": [{"name": "bench", "allow_publish_for_client": true, "allow_subscribe_for_client": true}]},
  "circles": {"keys": ["$KEY"], "data_dir": "$OUT/data"}
}
EOF
printf 's = "z" * 1000000\nfor i in range(13):\n    s = s + s\nlen(s)\n' >"$OUT/alloc.star"
printf '["z"*1000000]*2000\n' >"$OUT/format.star"
printf 'for i in range(1000000):\n    store.set("k%%d" %% i, "x" * 200)\n' >"$OUT/flood.star"
printf 'while True:\n    pass\n' >"$OUT/cpu.star"
CIRCLE="ws://127.0.0.1:$PORT/$KEY"

SERVER=""
start_server() { # $1 binary; sets SERVER
	rm -rf "$OUT/data"
	prlimit --as="$AS_LIMIT" -- "$1" serve -c "$OUT/config.json" >"$OUT/server.log" 2>&1 &
	SERVER=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && return 0
		sleep 0.1
	done
	echo "server did not start; see $OUT/server.log" >&2
	exit 1
}
stop_server() {
	kill "$SERVER" 2>/dev/null || true
	wait "$SERVER" 2>/dev/null || true
}

rss_kib() {
	local v
	v=$(awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || true)
	echo "${v:-0}"
}

attack() { # $1 binary, $2 script
	start_server "$1"
	(while kill -0 "$SERVER" 2>/dev/null; do
		kids=0
		for p in $(pgrep -P "$SERVER"); do kids=$((kids + $(rss_kib "$p"))); done
		echo "$(rss_kib "$SERVER") $kids"
		sleep 0.05
	done) >"$OUT/rss.txt" &
	local sampler=$! t0 t1 answer alive=yes
	t0=$(date +%s.%N)
	answer=$(timeout 120 "$1" play --url "$CIRCLE" --timeout 100s "$2" 2>&1 | head -c 200 || true)
	t1=$(date +%s.%N)
	sleep 0.3
	kill -0 "$SERVER" 2>/dev/null || alive=NO
	stop_server
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	printf '%s %s: %.1fs, peak RSS server %d MiB, sandboxes %d MiB, store %s, server alive: %s, answer: %s\n' \
		"$(basename "$1")" "$(basename "$2")" "$(echo "$t1 - $t0" | bc)" \
		$(($(awk '{print $1}' "$OUT/rss.txt" | sort -n | tail -1) / 1024)) \
		$(($(awk '{print $2}' "$OUT/rss.txt" | sort -n | tail -1) / 1024)) \
		"$(du -sh "$OUT/data" 2>/dev/null | cut -f1)" "$alive" "$(echo "$answer" | tr '\n' ' ')"
	grep -m1 "fatal error" "$OUT/server.log" || true
}

latency() { # $1 binary
	start_server "$1"
	local b=("$1" bench rpc --url "ws://127.0.0.1:$PORT/connection/websocket" --secret bench-secret
		--kind publish --channel bench:rpc -n 10 --rate 1000 --duration 10s --server-pid "$SERVER")
	echo "== $(basename "$1") idle"
	"${b[@]}" 2>&1 | grep -E "requests|latency"
	local loops=()
	for _ in 1 2 3 4; do
		(for _ in 1 2 3 4 5 6; do "$1" play --url "$CIRCLE" --timeout 100s "$OUT/cpu.star" >/dev/null 2>&1 || true; done) &
		loops+=($!)
	done
	sleep 1
	echo "== $(basename "$1") during 4 CPU-bound plays"
	"${b[@]}" 2>&1 | grep -E "requests|latency"
	stop_server # the play loops then fail fast and end
	for p in "${loops[@]}"; do wait "$p" 2>/dev/null || true; done
}

for bin in "$@"; do
	for s in alloc format flood; do attack "$bin" "$OUT/$s.star"; done
done
for bin in "$@"; do latency "$bin"; done
