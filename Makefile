# Switchback. `make run` starts the gateway on its embedded defaults;
# `make test` runs every test (it installs and starts PostgreSQL if needed).
.PHONY: run build test bench bench-short bench-flood fuzz clean

run: build
	./bin/switchback serve $(ARGS)

build:
	go build -o bin/switchback ./cmd/switchback

test:
	bash scripts/test.sh

bench:
	bash bench/run.sh

# The unauthenticated SIP flood alone (make bench runs it before bench/fleet.sh); see
# bench/flood.sh for its settings, BENCH_FLOOD_BEFORE for a comparison.
bench-flood:
	bash bench/flood.sh

# Every benchmark for a few seconds at a tiny load: shows they run, no more.
bench-short:
	BENCH_SHORT=1 bash bench/run.sh

# Runs each fuzz target for a while (FUZZTIME, default 30s each).
fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf bin
