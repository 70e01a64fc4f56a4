#!/usr/bin/env bash
# nats-throughput.sh [WORKERS...]: a real deployment on loopback, timed: the standard nats-server -js (built from the
# module this repository pins), N `sdxl-run worker` processes on the bundled model, and one `sdxl-run batch --nats`
# of 60 jobs (64x64, 2 steps). Prints jobs/s for each N (default: 1 and 3). With KILL=1, one worker is killed with
# SIGKILL a second into the batch: its job is redelivered after the ack wait (30 s) and every line still gets
# exactly one image. Everything it starts is stopped on exit.
set -euo pipefail
trap 'echo "nats-throughput.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || true; done
	if [ "${KEEP:-}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
go build -o "$tmp/sdxl-run" ./cmd/sdxl-run
go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2
for i in $(seq 60); do echo "{\"prompt\": \"a red cube $i\", \"width\": 64, \"height\": 64, \"steps\": 2, \"seed\": $i}"; done >"$tmp/jobs.jsonl"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 3)
port=4222
for n1 in "${counts[@]}"; do
	{
		port=$((port + 1)); d="$tmp/run$n1-$port"; mkdir -p "$d"
		"$tmp/nats-server" -js -sd "$d/js" -a 127.0.0.1 -p $port >"$d/nats.log" 2>&1 & pids+=($!)
		for _ in $(seq 100); do grep -q 'Server is ready' "$d/nats.log" && break; sleep 0.05; done
		ws=()
		for i in $(seq "$n1"); do
			"$tmp/sdxl-run" worker --nats nats://127.0.0.1:$port >"$d/w$i.out" 2>"$d/w$i.err" & pids+=($!); ws+=($!)
		done
		# Every worker has loaded its model, then advertised itself (a moment later).
		for _ in $(seq 300); do [ "$(cat "$d"/w*.out | grep -c 'takes the jobs' || true)" = "$n1" ] && break; sleep 0.1; done
		sleep 2
		if [ "${KILL:-}" = 1 ]; then (sleep 1; kill -9 "${ws[0]}" && echo "  SIGKILL to worker 1 at 1 s") & fi
		start=$(date +%s.%N)
		if ! "$tmp/sdxl-run" batch --nats nats://127.0.0.1:$port --in "$tmp/jobs.jsonl" --out "$d/out" --quiet >/dev/null 2>"$d/batch.err"; then
			cat "$d/batch.err" >&2
			exit 1
		fi
		end=$(date +%s.%N)
		wait_s=$(echo "$end - $start" | bc)
		echo "workers=$n1 images=$(ls "$d/out" | wc -l) seconds=$wait_s jobs/s=$(echo "60 / $wait_s" | bc -l | cut -c1-5)"
		for i in $(seq "$n1"); do echo "  worker $i: $(grep -c ': done in' "$d/w$i.err" || true) jobs"; done
		for p in "${ws[@]}"; do kill "$p" 2>/dev/null || true; done
	}
done
