#!/usr/bin/env bash
# The two side-by-side measurements against Centrifugo that issues 3 and 9 ask for:
#   memory per idle subscribed connection at N connections, and
#   fan-out to N subscribers of one channel with 1 and with 4 API publishers.
#
#   CENTRIFUGO_BIN=/work/peer/centrifugo SB_BIN=/tmp/switchboard OUT=/tmp/sbs scripts/bench-side-by-side.sh
#
# Each measurement is one scripts/bench.sh run (fresh server per scenario, the servers
# interleaved A, B, A, B) into its own directory, because the fan-out results do not record the
# publisher count:
#   $OUT/round-R/memory/results.json      bench conns  -n N
#   $OUT/round-R/fanout-p1/results.json   bench fanout -s N --publishers 1
#   $OUT/round-R/fanout-p4/results.json   bench fanout -s N --publishers 4
# each with img/summary.md (side-by-side tables, ratio switchboard / centrifugo). All results
# are also concatenated into $OUT/results.json.
#
# Environment:
#   CENTRIFUGO_BIN   centrifugo binary (built from a fetched snapshot; never committed)   [required]
#   SB_BIN           switchboard binary                                                  [required]
#   OUT              output directory                                          [bench-side-by-side]
#   N                connections (memory) and subscribers (fan-out)                          [10000]
#   PUBLISHERS       API publisher counts for the fan-out runs                                 [1 4]
#   ROUNDS           repetitions of the whole set, for the spread between runs                   [1]
#   DURATION         measurement phase per run                                                 [10s]
#   PROTOCOL         json or protobuf                                                         [json]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${CENTRIFUGO_BIN:?set CENTRIFUGO_BIN to the centrifugo binary}"
: "${SB_BIN:?set SB_BIN to the switchboard binary}"
OUT=${OUT:-bench-side-by-side}
N=${N:-10000}
PUBLISHERS=${PUBLISHERS:-1 4}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-10s}
PROTOCOL=${PROTOCOL:-json}

for bin in "$CENTRIFUGO_BIN" "$SB_BIN"; do
	[ -x "$bin" ] || { echo "$bin is not an executable file" >&2; exit 2; }
done
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive integer, not '$N'" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer, not '$ROUNDS'" >&2; exit 2; }
for p in $PUBLISHERS; do
	[[ $p =~ ^[1-9][0-9]*$ ]] || { echo "PUBLISHERS must be positive integers, not '$p'" >&2; exit 2; }
done
if [ "$N" -gt 19000 ]; then
	echo "note: N=$N needs about $N open files in both the server and the tool (ulimit -Hn: $(ulimit -Hn))" >&2
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ALL=$OUT/results.json
: > "$ALL"
export CENTRIFUGO_BIN SB_BIN DURATION PROTOCOL
export SERVERS="centrifugo switchboard" # centrifugo first: the ratios are switchboard / centrifugo

measure() { # $1 = directory, rest = environment for scripts/bench.sh
	local dir=$1
	shift
	echo "== $(date -u +%H:%M:%SZ) $dir" >&2
	env OUT="$dir" "$@" "$ROOT/scripts/bench.sh"
	cat "$dir/results.json" >> "$ALL"
}

for r in $(seq "$ROUNDS"); do
	base=$OUT/round-$r
	measure "$base/memory" SCENARIOS=conns CONNS="$N"
	for p in $PUBLISHERS; do
		measure "$base/fanout-p$p" SCENARIOS=fanout FANOUT_SUBS="$N" FANOUT_PUBLISHERS="$p"
	done
done

for r in $(seq "$ROUNDS"); do
	for m in memory $(printf 'fanout-p%s ' $PUBLISHERS); do
		echo
		echo "## round $r, $m"
		cat "$OUT/round-$r/$m/img/summary.md"
	done
done
echo "results: $ALL" >&2
