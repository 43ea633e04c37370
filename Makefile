.PHONY: test bench

# The README's test command.
test:
	go test -race -count=1 ./...

# Reproduces the Switchboard side of docs/benchmarks.md (about 10 minutes, loopback only).
# For the side-by-side record: SERVERS="centrifugo switchboard" CENTRIFUGO_BIN=... make bench
bench:
	scripts/bench.sh
