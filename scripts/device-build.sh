#!/usr/bin/env bash
# device-build.sh builds, on any Linux machine with Go, the binaries that
# scripts/device-check.sh runs on a GPU machine (which has no Go toolchain),
# compressed so that they fit beside the working tree in a 64 MiB transfer:
#
#   bin/cuda.test.gz   the CUDA backend's tests and benchmarks
#   bin/cli.test.gz    sdxl-run's tests; with SDXL_RUN_CLI=1 it is sdxl-run
#                      itself (built with -tags nobundle: the model it needs
#                      is read from the working tree)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
go test -c -ldflags='-s -w' -o bin/cuda.test ./backend/cuda
go test -c -ldflags='-s -w' -tags nobundle -o bin/cli.test ./cmd/sdxl-run
gzip -9 -f bin/cuda.test bin/cli.test
ls -l bin
echo "now run on the GPU machine, carrying bin/:  scripts/device-check.sh \"\$OUT\""
