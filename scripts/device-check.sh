#!/usr/bin/env bash
# device-check.sh runs the CUDA backend's checks on a GPU machine from
# binaries built elsewhere (the GPU machine needs no Go toolchain), writing
# every log into one folder, in under 8 minutes.
#
# Build first, on any Linux x86-64 machine, from the repository root:
#
#   scripts/device-build.sh        # bin/cuda.test.gz and bin/cli.test.gz
#
# then on the GPU machine (bin/ is git-ignored: copy it along):
#
#   scripts/device-check.sh [OUTDIR]      # default: $OUT, else ./device-check-out
#
# What it writes:
#   summary.txt      pass/fail counts, failures, benchmark lines, timings
#   env.txt          nvidia-smi, driver and library locations
#   cuda-test.log    `cuda.test -test.v`: device info, conformance suite on
#                    the GPU (twice: pooled, and exact allocations with a
#                    sync after every op), attention paths (flash, generic,
#                    GEMM) against the CPU backend, chunked paths, failure
#                    handling, memory accounting, the tiny and small golden
#                    pipelines in f32 and f16, torch's CUDA randn streams
#                    bit for bit
#   cuda-bench.log   benchmarks: MatMul 4096x1280x1280, SDXL attention
#                    shapes per implementation, Conv2D, GroupNorm+SiLU, op
#                    overhead (TFLOP/s, TB/s, us/op, peak MiB)
#   cli-golden.log   every golden/small scenario available in the tree run
#                    through sdxl-run's flags with --device cuda --dtype f32,
#                    checked against the same goldens as on the CPU
#   sdxl-run-bench.log  sdxl-run bench: real SDXL sizes, random weights,
#                    1024x1024, 30 steps, f16, batch 2 (CFG), with op shares
#
# Environment: SDXL_CUDA_REQUIRE=1 is set so that a broken setup fails the
# tests instead of skipping them; SDXL_CUDA_DEVICE picks the GPU (default
# 0); BIN overrides the binaries' folder. Exit status: 0 when every step
# passed, 1 otherwise.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${1:-${OUT:-$ROOT/device-check-out}}
BIN=${BIN:-$ROOT/bin}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"

export SDXL_CUDA_REQUIRE=1
export SDXL_CUDA_SKIP_EMU=1 # the emulator tests need no GPU; CI runs them
export SDXL_CUDA_KERNEL_CACHE=${SDXL_CUDA_KERNEL_CACHE:-${TMPDIR:-/tmp}/sdxl-cuda-kernels}

START=$(date +%s)
BUDGET=${BUDGET:-470} # seconds for the whole script
STATUS=0

log() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(($(date +%s) - START)); }
# left prints the seconds left for a step, at most $1.
left() {
	local l=$((BUDGET - $(elapsed)))
	if [ "$l" -gt "$1" ]; then l=$1; fi
	echo "$l"
}

log "device-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), binaries in $BIN, logs in $OUTDIR"
for z in "$BIN"/*.gz; do
	[ -e "$z" ] || continue
	gunzip -c "$z" >"${z%.gz}" && chmod +x "${z%.gz}"
done

{
	echo "== uname"; uname -a
	echo "== nvidia-smi"; nvidia-smi 2>&1
	echo "== GPUs"; nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1
	echo "== CUDA folders"; ls -d /usr/local/cuda* 2>&1; echo "CUDA_HOME=${CUDA_HOME:-}"
	echo "== libraries in the loader cache"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas|libnvrtc' || echo none
	echo "== toolkit libraries"; ls -l /usr/local/cuda/lib64/libcublas.so* /usr/local/cuda/lib64/libnvrtc*.so* 2>&1
	echo "== headers"; ls -l /usr/local/cuda/include/mma.h /usr/local/cuda/include/cuda_fp16.h 2>&1
	echo "== glibc"; ldd --version 2>&1 | head -1
} >"$OUTDIR/env.txt" 2>&1
log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"

# count prints "N pass, N fail, N skip" for a go test -v log.
count() {
	local p f s
	p=$(grep -cE '^\s*--- PASS' "$1")
	f=$(grep -cE '^\s*--- FAIL' "$1")
	s=$(grep -cE '^\s*--- SKIP' "$1")
	echo "$p pass, $f fail, $s skip"
}

if [ ! -x "$BIN/cuda.test" ]; then
	log "FAIL: $BIN/cuda.test missing (build it with scripts/device-build.sh)"
	STATUS=1
else
	# The test binary runs in the package folder, as go test does: the
	# golden pipelines and torch's CUDA noise streams are read from the
	# working tree's testdata/ (and the bundled small model).
	T=$(left 150)
	log "== tests (limit ${T}s)"
	(cd "$ROOT/backend/cuda" && SDXL_GOLDEN=${SDXL_GOLDEN:-$ROOT/testdata/golden} timeout -k 10 "$T" \
		"$BIN/cuda.test" -test.v -test.timeout "$((T - 5))s" -test.run 'Test') >"$OUTDIR/cuda-test.log" 2>&1
	rc=$?
	log "cuda.test: exit $rc, $(count "$OUTDIR/cuda-test.log") ($(elapsed)s elapsed)"
	grep -E 'cuda_test.go:[0-9]+: (device|driver|libraries|include|flash)' "$OUTDIR/cuda-test.log" | sed 's/^ */  /' | tee -a "$SUMMARY"
	grep -E '^\s*--- (FAIL|SKIP)' "$OUTDIR/cuda-test.log" | head -40 | tee -a "$SUMMARY"
	grep -E 'panic:|fatal error:|CUDA unavailable|CUDA_ERROR|CUBLAS_STATUS|NVRTC_ERROR' "$OUTDIR/cuda-test.log" | head -20 | tee -a "$SUMMARY"
	[ "$rc" -eq 0 ] || STATUS=1
	grep -E 'TestTorchRandnGolden|random_test.go:[0-9]+: .*(bit-exact|differ|mode)' "$OUTDIR/cuda-test.log" | head -20 | sed 's/^ */  /' | tee -a "$SUMMARY"
fi

if [ -x "$BIN/cli.test" ]; then
	# The golden scenarios on the GPU, in f32: the test binary finds the
	# goldens in the working tree's testdata/ (run from the package folder,
	# as go test does).
	T=$(left 100)
	if [ "$T" -gt 20 ]; then
		log "== golden scenarios on cuda f32 (limit ${T}s)"
		(cd "$ROOT/cmd/sdxl-run" && SDXL_TEST_DEVICE=cuda timeout -k 5 "$T" "$BIN/cli.test" -test.v \
			-test.run 'TestCLIGoldenScenarios|TestCLISingleFile' -test.timeout "$((T - 3))s") >"$OUTDIR/cli-golden.log" 2>&1
		rc=$?
		log "golden scenarios: exit $rc, $(count "$OUTDIR/cli-golden.log") ($(elapsed)s elapsed)"
		grep -E 'final_latents|levels|--- FAIL|panic|Error' "$OUTDIR/cli-golden.log" | sed 's/^ */  /' | tee -a "$SUMMARY"
		[ "$rc" -eq 0 ] || STATUS=1
	fi
	T=$(left 200)
	if [ "$T" -gt 40 ]; then
		log "== sdxl-run bench (random weights, 1024x1024, 30 steps, f16, limit ${T}s)"
		SDXL_RUN_CLI=1 timeout -k 5 "$T" "$BIN/cli.test" bench --random-weights --device cuda --dtype f16 \
			--size 1024 --steps 30 --profile >"$OUTDIR/sdxl-run-bench.log" 2>&1
		rc=$?
		log "sdxl-run bench: exit $rc ($(elapsed)s elapsed)"
		head -40 "$OUTDIR/sdxl-run-bench.log" | sed 's/^/  /' | tee -a "$SUMMARY"
		[ "$rc" -eq 0 ] || STATUS=1
	fi
else
	log "cli.test: $BIN/cli.test not built (scripts/device-build.sh); skipped"
fi

if [ -x "$BIN/cuda.test" ]; then
	T=$(left 170)
	if [ "$T" -gt 30 ]; then
		log "== benchmarks (limit ${T}s)"
		(cd "$(mktemp -d)" && timeout -k 10 "$T" "$BIN/cuda.test" -test.run '^$' -test.bench . -test.benchtime 10x \
			-test.timeout "$((T - 5))s") >"$OUTDIR/cuda-bench.log" 2>&1
		rc=$?
		log "benchmarks: exit $rc ($(elapsed)s elapsed)"
		grep -E '^Benchmark|--- SKIP|--- FAIL|skipped|panic' "$OUTDIR/cuda-bench.log" | tee -a "$SUMMARY"
		[ "$rc" -eq 0 ] || STATUS=1
	else
		log "benchmarks skipped: out of time"
	fi
fi

log "done in $(elapsed)s, status $STATUS"
exit $STATUS
