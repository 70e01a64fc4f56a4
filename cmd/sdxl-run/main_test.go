package main

import (
	"context"
	"os"
	"testing"
)

// TestMain lets the test binary act as sdxl-run itself when SDXL_RUN_CLI=1:
// the GPU checks then carry one binary (built with -tags nobundle) that runs
// both these tests and `sdxl-run bench` (see scripts/device-check.sh).
func TestMain(m *testing.M) {
	if os.Getenv("SDXL_RUN_CLI") == "1" {
		ctx := context.Background()
		if spec := os.Getenv("SDXL_RUN_TEST_SIGNAL"); spec != "" {
			ctx = context.WithValue(ctx, stageHookKey{}, signalHook(spec))
		}
		os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testDevice is the device the CLI golden tests run on: cpu, or the
// SDXL_TEST_DEVICE environment variable (cuda on a GPU machine, where the
// scenarios run in f32 and must match the same goldens).
func testDevice() []string {
	if d := os.Getenv("SDXL_TEST_DEVICE"); d != "" && d != "cpu" {
		return []string{"--device", d, "--dtype", "f32"}
	}
	return []string{"--device", "cpu"}
}
